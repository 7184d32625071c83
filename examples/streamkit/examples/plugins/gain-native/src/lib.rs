//! `gain`: an example native plugin that multiplies audio samples by a gain in decibels.
//!
//! Self-contained on purpose (no dependency on `plugins/native/common`), to show the whole
//! ABI a StreamKit native plugin exports in one file.

use std::ffi::{c_char, c_void, CStr};

const API_VERSION: u32 = 9;
const STATUS_OK: i32 = 0;
const STATUS_ERROR: i32 = -1;
const MIN_GAIN_DB: f64 = -60.0;
const MAX_GAIN_DB: f64 = 24.0;

#[repr(C)]
pub struct CPin {
    name: *const c_char,
    packet_type: *const c_char,
}

// Every pointer in the statics below points at a string literal, valid for the program's life.
unsafe impl Sync for CPin {}

#[repr(transparent)]
pub struct CStrPtr(*const c_char);

unsafe impl Sync for CStrPtr {}

#[repr(C)]
pub struct CNodeMetadata {
    kind: *const c_char,
    description: *const c_char,
    inputs: *const CPin,
    inputs_count: usize,
    outputs: *const CPin,
    outputs_count: usize,
    param_schema: *const c_char,
    categories: *const CStrPtr,
    categories_count: usize,
}

unsafe impl Sync for CNodeMetadata {}

#[repr(C)]
pub struct CAudioFrame {
    samples: *mut f32,
    sample_count: usize,
    sample_rate: u32,
    channels: u16,
}

#[repr(C)]
pub struct CSourceConfig {
    sample_rate: u32,
    channels: u16,
    frame_samples: u32,
}

#[repr(C)]
pub struct CNativePluginAPI {
    version: u32,
    get_metadata: extern "C" fn() -> *const CNodeMetadata,
    create_instance: extern "C" fn(*const c_char) -> *mut c_void,
    process_packet: extern "C" fn(*mut c_void, *const c_char, *mut CAudioFrame) -> i32,
    update_params: extern "C" fn(*mut c_void, *const c_char) -> i32,
    flush: extern "C" fn(*mut c_void) -> i32,
    destroy_instance: extern "C" fn(*mut c_void),
    get_source_config: Option<extern "C" fn(*mut c_void, *mut CSourceConfig) -> i32>,
    tick: Option<extern "C" fn(*mut c_void, *mut CAudioFrame) -> i32>,
    get_runtime_param_schema: Option<extern "C" fn(*mut c_void) -> *const c_char>,
    on_upstream_hint: Option<extern "C" fn(*mut c_void, *const c_char)>,
}

const PARAM_SCHEMA: &CStr = c"{\"type\":\"object\",\"properties\":{\
\"gain_db\":{\"type\":\"number\",\"minimum\":-60,\"maximum\":24,\"default\":0}}}";

static INPUTS: [CPin; 1] = [CPin {
    name: c"in".as_ptr(),
    packet_type: c"audio/f32".as_ptr(),
}];

static OUTPUTS: [CPin; 1] = [CPin {
    name: c"out".as_ptr(),
    packet_type: c"audio/f32".as_ptr(),
}];

static CATEGORIES: [CStrPtr; 2] = [CStrPtr(c"audio".as_ptr()), CStrPtr(c"filters".as_ptr())];

static METADATA: CNodeMetadata = CNodeMetadata {
    kind: c"gain".as_ptr(),
    description: c"Multiplies audio samples by a gain given in dB".as_ptr(),
    inputs: INPUTS.as_ptr(),
    inputs_count: INPUTS.len(),
    outputs: OUTPUTS.as_ptr(),
    outputs_count: OUTPUTS.len(),
    param_schema: PARAM_SCHEMA.as_ptr(),
    categories: CATEGORIES.as_ptr(),
    categories_count: CATEGORIES.len(),
};

static API: CNativePluginAPI = CNativePluginAPI {
    version: API_VERSION,
    get_metadata,
    create_instance,
    process_packet,
    update_params,
    flush,
    destroy_instance,
    // Not a source: no source config and no tick.
    get_source_config: None,
    tick: None,
    get_runtime_param_schema: Some(get_runtime_param_schema),
    on_upstream_hint: None,
};

struct Gain {
    factor: f32,
}

/// Reads `"gain_db": <number>` from the flat JSON parameter object, without a JSON crate.
fn gain_db(params_json: &str) -> Option<f64> {
    let after_key = &params_json[params_json.find("\"gain_db\"")? + "\"gain_db\"".len()..];
    let value = after_key.trim_start().strip_prefix(':')?.trim_start();
    let end = value
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E')))
        .unwrap_or(value.len());
    value[..end].parse().ok()
}

fn factor_from_db(db: f64) -> f32 {
    10f64.powf(db.clamp(MIN_GAIN_DB, MAX_GAIN_DB) / 20.0) as f32
}

unsafe fn str_arg<'a>(text: *const c_char) -> Option<&'a str> {
    if text.is_null() {
        None
    } else {
        CStr::from_ptr(text).to_str().ok()
    }
}

/// The entry point the StreamKit host looks up with dlsym.
#[no_mangle]
pub extern "C" fn streamkit_native_plugin_api() -> *const CNativePluginAPI {
    &API
}

extern "C" fn get_metadata() -> *const CNodeMetadata {
    &METADATA
}

extern "C" fn create_instance(params_json: *const c_char) -> *mut c_void {
    let db = unsafe { str_arg(params_json) }.and_then(gain_db).unwrap_or(0.0);
    Box::into_raw(Box::new(Gain { factor: factor_from_db(db) })).cast()
}

extern "C" fn process_packet(instance: *mut c_void, _pin: *const c_char, frame: *mut CAudioFrame) -> i32 {
    let (Some(gain), Some(frame)) = (unsafe { instance.cast::<Gain>().as_ref() }, unsafe { frame.as_mut() })
    else {
        return STATUS_ERROR;
    };
    if frame.samples.is_null() {
        return STATUS_ERROR;
    }
    for sample in unsafe { std::slice::from_raw_parts_mut(frame.samples, frame.sample_count) } {
        *sample *= gain.factor;
    }
    STATUS_OK
}

extern "C" fn update_params(instance: *mut c_void, params_json: *const c_char) -> i32 {
    let (Some(gain), Some(db)) = (
        unsafe { instance.cast::<Gain>().as_mut() },
        unsafe { str_arg(params_json) }.and_then(gain_db),
    ) else {
        return STATUS_ERROR;
    };
    gain.factor = factor_from_db(db);
    STATUS_OK
}

extern "C" fn flush(_: *mut c_void) -> i32 {
    // Stateless per sample: nothing is buffered.
    STATUS_OK
}

extern "C" fn destroy_instance(instance: *mut c_void) {
    if !instance.is_null() {
        drop(unsafe { Box::from_raw(instance.cast::<Gain>()) });
    }
}

extern "C" fn get_runtime_param_schema(_: *mut c_void) -> *const c_char {
    PARAM_SCHEMA.as_ptr()
}
