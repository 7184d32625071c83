//! Test fixture: a StreamKit native plugin in Rust, compiled directly with `rustc`.
//!
//! tests/fixturelib.py builds it in a few shapes:
//! - `--crate-type cdylib`: a good plugin; the node kind comes from the environment variable
//!   `FIXTURE_PLUGIN_KIND` at compile time.
//! - `--cfg fixture_entry_mangled --crate-type cdylib`: the entry function lacks
//!   `#[no_mangle]`. rustc then does not export it at all; a `#[used]` reference keeps it in
//!   the file, so it shows up only as a LOCAL, mangled name in `.symtab`.
//! - `--cfg fixture_entry_mangled --crate-type dylib`: a Rust dylib exports every reachable
//!   public function, so the entry exists in `.dynsym`, but only under its mangled name.

use std::ffi::{c_char, c_void, CStr};

const KIND: &str = concat!(env!("FIXTURE_PLUGIN_KIND"), "\0");

#[repr(C)]
pub struct CPin {
    name: *const c_char,
    packet_type: *const c_char,
}

// The pointers in these statics point at literals that live as long as the library.
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
pub struct CNativePluginAPI {
    version: u32,
    get_metadata: extern "C" fn() -> *const CNodeMetadata,
    create_instance: extern "C" fn(*const c_char) -> *mut c_void,
    process_packet: extern "C" fn(*mut c_void, *const c_char, *mut CAudioFrame) -> i32,
    update_params: extern "C" fn(*mut c_void, *const c_char) -> i32,
    flush: extern "C" fn(*mut c_void) -> i32,
    destroy_instance: extern "C" fn(*mut c_void),
    get_source_config: Option<extern "C" fn(*mut c_void, *mut c_void) -> i32>,
    tick: Option<extern "C" fn(*mut c_void, *mut CAudioFrame) -> i32>,
    get_runtime_param_schema: Option<extern "C" fn(*mut c_void) -> *const c_char>,
    on_upstream_hint: Option<extern "C" fn(*mut c_void, *const c_char)>,
}

static INPUTS: [CPin; 1] = [CPin {
    name: c"in".as_ptr(),
    packet_type: c"audio/f32".as_ptr(),
}];

static OUTPUTS: [CPin; 1] = [CPin {
    name: c"out".as_ptr(),
    packet_type: c"audio/f32".as_ptr(),
}];

static CATEGORIES: [CStrPtr; 1] = [CStrPtr(c"testing".as_ptr())];

static METADATA: CNodeMetadata = CNodeMetadata {
    kind: KIND.as_ptr().cast(),
    description: c"Test fixture in Rust: passes audio through unchanged".as_ptr(),
    inputs: INPUTS.as_ptr(),
    inputs_count: INPUTS.len(),
    outputs: OUTPUTS.as_ptr(),
    outputs_count: OUTPUTS.len(),
    param_schema: c"{\"type\":\"object\",\"properties\":{}}".as_ptr(),
    categories: CATEGORIES.as_ptr(),
    categories_count: CATEGORIES.len(),
};

static API: CNativePluginAPI = CNativePluginAPI {
    version: 9,
    get_metadata,
    create_instance,
    process_packet,
    update_params,
    flush,
    destroy_instance,
    get_source_config: None,
    tick: None,
    get_runtime_param_schema: None,
    on_upstream_hint: None,
};

/// Passes samples through: the fixture only needs a real, callable node.
struct Passthrough;

// `inline(never)`: otherwise rustc may treat the small function as inlinable across crates
// and emit no code for it in a dylib, which would hide the mangled export.
#[cfg_attr(not(fixture_entry_mangled), no_mangle)]
#[inline(never)]
pub extern "C" fn streamkit_native_plugin_api() -> *const CNativePluginAPI {
    &API
}

#[cfg(fixture_entry_mangled)]
#[used]
static KEEP_ENTRY: extern "C" fn() -> *const CNativePluginAPI = streamkit_native_plugin_api;

extern "C" fn get_metadata() -> *const CNodeMetadata {
    &METADATA
}

extern "C" fn create_instance(_params_json: *const c_char) -> *mut c_void {
    Box::into_raw(Box::new(Passthrough)).cast()
}

extern "C" fn process_packet(instance: *mut c_void, _pin: *const c_char, frame: *mut CAudioFrame) -> i32 {
    if instance.is_null() || frame.is_null() {
        -1
    } else {
        0
    }
}

extern "C" fn update_params(instance: *mut c_void, params_json: *const c_char) -> i32 {
    if instance.is_null() || params_json.is_null() {
        return -1;
    }
    // Parameters must at least be text; the node has none to apply.
    match unsafe { CStr::from_ptr(params_json) }.to_str() {
        Ok(_) => 0,
        Err(_) => -1,
    }
}

extern "C" fn flush(_: *mut c_void) -> i32 {
    0
}

extern "C" fn destroy_instance(instance: *mut c_void) {
    if !instance.is_null() {
        drop(unsafe { Box::from_raw(instance.cast::<Passthrough>()) });
    }
}
