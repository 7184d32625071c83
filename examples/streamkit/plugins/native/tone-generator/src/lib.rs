//! `tone`: a source node that generates a sine tone.
//!
//! It exports the StreamKit native plugin entry point `streamkit_native_plugin_api` and fills
//! the host's frames from `tick`. Being a source, it takes no input packets.

use std::f64::consts::TAU;
use std::ffi::{c_char, c_void};

use streamkit_native_common::{
    c_str_arg, json_number, CAudioFrame, CNativePluginAPI, CNodeMetadata, CPin, CSourceConfig,
    CStrPtr, NATIVE_API_VERSION, STATUS_ERROR, STATUS_OK,
};

const SAMPLE_RATE: u32 = 48_000;
const FRAME_SAMPLES: u32 = 960;
const DEFAULT_FREQUENCY_HZ: f64 = 440.0;
const DEFAULT_AMPLITUDE: f64 = 0.5;

const PARAM_SCHEMA: &std::ffi::CStr = c"{\"type\":\"object\",\"properties\":{\
\"frequency_hz\":{\"type\":\"number\",\"minimum\":1,\"maximum\":20000,\"default\":440},\
\"amplitude\":{\"type\":\"number\",\"minimum\":0,\"maximum\":1,\"default\":0.5}}}";

static OUTPUTS: [CPin; 1] = [CPin {
    name: c"out".as_ptr(),
    packet_type: c"audio/f32".as_ptr(),
}];

static CATEGORIES: [CStrPtr; 2] = [CStrPtr(c"audio".as_ptr()), CStrPtr(c"generators".as_ptr())];

static METADATA: CNodeMetadata = CNodeMetadata {
    kind: c"tone".as_ptr(),
    description: c"Generates a sine tone (mono, 48 kHz)".as_ptr(),
    inputs: std::ptr::null(),
    inputs_count: 0,
    outputs: OUTPUTS.as_ptr(),
    outputs_count: OUTPUTS.len(),
    param_schema: PARAM_SCHEMA.as_ptr(),
    categories: CATEGORIES.as_ptr(),
    categories_count: CATEGORIES.len(),
};

static API: CNativePluginAPI = CNativePluginAPI {
    version: NATIVE_API_VERSION,
    get_metadata,
    create_instance,
    process_packet,
    update_params,
    flush,
    destroy_instance,
    get_source_config: Some(get_source_config),
    tick: Some(tick),
    get_runtime_param_schema: Some(get_runtime_param_schema),
    on_upstream_hint: None,
};

struct Tone {
    frequency_hz: f64,
    amplitude: f64,
    /// Position in the wave, in cycles (0..1), kept between ticks so frames join smoothly.
    phase: f64,
}

impl Tone {
    fn apply(&mut self, params_json: &str) {
        if let Some(frequency) = json_number(params_json, "frequency_hz") {
            self.frequency_hz = frequency.clamp(1.0, 20_000.0);
        }
        if let Some(amplitude) = json_number(params_json, "amplitude") {
            self.amplitude = amplitude.clamp(0.0, 1.0);
        }
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
    let mut tone = Tone {
        frequency_hz: DEFAULT_FREQUENCY_HZ,
        amplitude: DEFAULT_AMPLITUDE,
        phase: 0.0,
    };
    if let Some(params) = unsafe { c_str_arg(params_json) } {
        tone.apply(params);
    }
    Box::into_raw(Box::new(tone)).cast()
}

extern "C" fn process_packet(_: *mut c_void, _: *const c_char, _: *mut CAudioFrame) -> i32 {
    // A source has no input pins, so any packet sent to it is a host error.
    STATUS_ERROR
}

extern "C" fn update_params(instance: *mut c_void, params_json: *const c_char) -> i32 {
    let (Some(tone), Some(params)) = (unsafe { instance.cast::<Tone>().as_mut() }, unsafe {
        c_str_arg(params_json)
    }) else {
        return STATUS_ERROR;
    };
    tone.apply(params);
    STATUS_OK
}

extern "C" fn flush(_: *mut c_void) -> i32 {
    STATUS_OK
}

extern "C" fn destroy_instance(instance: *mut c_void) {
    if !instance.is_null() {
        drop(unsafe { Box::from_raw(instance.cast::<Tone>()) });
    }
}

extern "C" fn get_source_config(_: *mut c_void, out: *mut CSourceConfig) -> i32 {
    let Some(out) = (unsafe { out.as_mut() }) else {
        return STATUS_ERROR;
    };
    *out = CSourceConfig {
        sample_rate: SAMPLE_RATE,
        channels: 1,
        frame_samples: FRAME_SAMPLES,
    };
    STATUS_OK
}

extern "C" fn tick(instance: *mut c_void, out: *mut CAudioFrame) -> i32 {
    let (Some(tone), Some(frame)) = (unsafe { instance.cast::<Tone>().as_mut() }, unsafe {
        out.as_mut()
    }) else {
        return STATUS_ERROR;
    };
    if frame.samples.is_null() {
        return STATUS_ERROR;
    }
    let samples = unsafe { std::slice::from_raw_parts_mut(frame.samples, frame.sample_count) };
    let step = tone.frequency_hz / f64::from(SAMPLE_RATE);
    for sample in samples {
        *sample = (tone.amplitude * (TAU * tone.phase).sin()) as f32;
        tone.phase = (tone.phase + step).fract();
    }
    frame.sample_rate = SAMPLE_RATE;
    frame.channels = 1;
    STATUS_OK
}

extern "C" fn get_runtime_param_schema(_: *mut c_void) -> *const c_char {
    PARAM_SCHEMA.as_ptr()
}
