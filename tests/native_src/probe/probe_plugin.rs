//! Test fixture for the load probe (tests/test_probe.py): a StreamKit native plugin written in
//! Rust with no dependencies, built with `rustc --crate-type cdylib`. Node kind "probe_rust",
//! API version 9. The layout follows the StreamKit native ABI: a `#[repr(C)]` table starting
//! with a u32 version, then function pointers, the first of which is get_metadata.

use std::ffi::{c_char, c_void};

#[repr(C)]
pub struct CPin {
    name: *const c_char,
    packet_type: *const c_char,
}

#[repr(C)]
pub struct CNodeMetadata {
    kind: *const c_char,
    description: *const c_char,
    inputs: *const CPin,
    inputs_count: usize,
    outputs: *const CPin,
    outputs_count: usize,
    param_schema: *const c_char,
    categories: *const *const c_char,
    categories_count: usize,
}

#[repr(C)]
pub struct CNativePluginAPI {
    version: u32,
    get_metadata: extern "C" fn() -> *const CNodeMetadata,
    create_instance: extern "C" fn(*const c_char) -> *mut c_void,
    process_packet: extern "C" fn(*mut c_void, *const c_char, *mut c_void) -> i32,
    update_params: extern "C" fn(*mut c_void, *const c_char) -> i32,
    flush: extern "C" fn(*mut c_void) -> i32,
    destroy_instance: extern "C" fn(*mut c_void),
    get_source_config: Option<extern "C" fn(*mut c_void, *mut c_void) -> i32>,
    tick: Option<extern "C" fn(*mut c_void, *mut c_void) -> i32>,
    get_runtime_param_schema: Option<extern "C" fn(*mut c_void) -> *const c_char>,
    on_upstream_hint: Option<extern "C" fn(*mut c_void, *const c_char)>,
}

/// Raw pointers are not `Sync`; these statics are immutable, so sharing them is sound.
struct Shared<T>(T);
unsafe impl<T> Sync for Shared<T> {}

static INPUTS: Shared<[CPin; 1]> = Shared([CPin { name: c"in".as_ptr(), packet_type: c"audio/f32".as_ptr() }]);
static OUTPUTS: Shared<[CPin; 1]> = Shared([CPin { name: c"out".as_ptr(), packet_type: c"audio/f32".as_ptr() }]);
static CATEGORIES: Shared<[*const c_char; 1]> = Shared([c"testing".as_ptr()]);

static METADATA: Shared<CNodeMetadata> = Shared(CNodeMetadata {
    kind: c"probe_rust".as_ptr(),
    description: c"Probe fixture (Rust)".as_ptr(),
    inputs: &INPUTS.0 as *const [CPin; 1] as *const CPin,
    inputs_count: 1,
    outputs: &OUTPUTS.0 as *const [CPin; 1] as *const CPin,
    outputs_count: 1,
    param_schema: c"{\"type\":\"object\"}".as_ptr(),
    categories: &CATEGORIES.0 as *const [*const c_char; 1] as *const *const c_char,
    categories_count: 1,
});

extern "C" fn get_metadata() -> *const CNodeMetadata {
    &METADATA.0
}

extern "C" fn create_instance(_params: *const c_char) -> *mut c_void {
    Box::into_raw(Box::new(1.0f32)) as *mut c_void
}

extern "C" fn process_packet(instance: *mut c_void, _pin: *const c_char, _frame: *mut c_void) -> i32 {
    if instance.is_null() { -1 } else { 0 }
}

extern "C" fn update_params(instance: *mut c_void, _params: *const c_char) -> i32 {
    if instance.is_null() { -1 } else { 0 }
}

extern "C" fn flush(_instance: *mut c_void) -> i32 {
    0
}

extern "C" fn destroy_instance(instance: *mut c_void) {
    if !instance.is_null() {
        // SAFETY: every instance comes from create_instance's Box<f32>.
        drop(unsafe { Box::from_raw(instance as *mut f32) });
    }
}

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

#[no_mangle]
pub extern "C" fn streamkit_native_plugin_api() -> *const CNativePluginAPI {
    &API
}
