//! Support crate for the sample tree's official native plugins (not a plugin itself).
//!
//! It holds the `#[repr(C)]` types of the StreamKit native plugin ABI, version 9 layout, and
//! a few small helpers, so that plugins under `plugins/native/` do not each restate them.
//! There is no `plugin.yml` next to this crate: plugin discovery must not mistake it for a
//! plugin.

use std::ffi::{c_char, c_void, CStr};

/// The ABI version these types describe; the host accepts 6..=9.
pub const NATIVE_API_VERSION: u32 = 9;

/// Return codes of the fallible entry points.
pub const STATUS_OK: i32 = 0;
pub const STATUS_ERROR: i32 = -1;

/// One input or output pin of a node.
#[repr(C)]
pub struct CPin {
    pub name: *const c_char,
    pub packet_type: *const c_char,
}

// The pointers in these statics point at string literals that live for the whole program,
// so sharing them between threads is sound.
unsafe impl Sync for CPin {}

/// A C string pointer that may sit in a `static` array.
#[repr(transparent)]
pub struct CStrPtr(pub *const c_char);

unsafe impl Sync for CStrPtr {}

/// What `get_metadata` returns. `kind` must stay the first field: the host reads it first.
#[repr(C)]
pub struct CNodeMetadata {
    pub kind: *const c_char,
    pub description: *const c_char,
    pub inputs: *const CPin,
    pub inputs_count: usize,
    pub outputs: *const CPin,
    pub outputs_count: usize,
    /// JSON Schema of the node's parameters, as NUL-terminated JSON text.
    pub param_schema: *const c_char,
    pub categories: *const CStrPtr,
    pub categories_count: usize,
}

unsafe impl Sync for CNodeMetadata {}

/// A block of interleaved `f32` samples owned by the host.
#[repr(C)]
pub struct CAudioFrame {
    pub samples: *mut f32,
    pub sample_count: usize,
    pub sample_rate: u32,
    pub channels: u16,
}

/// What a source node produces on each `tick`.
#[repr(C)]
pub struct CSourceConfig {
    pub sample_rate: u32,
    pub channels: u16,
    pub frame_samples: u32,
}

/// The table the entry symbol `streamkit_native_plugin_api` returns a pointer to.
/// `version` comes first; the optional entry points at the end may be `None` (NULL).
#[repr(C)]
pub struct CNativePluginAPI {
    pub version: u32,
    pub get_metadata: extern "C" fn() -> *const CNodeMetadata,
    pub create_instance: extern "C" fn(params_json: *const c_char) -> *mut c_void,
    pub process_packet:
        extern "C" fn(instance: *mut c_void, input_pin: *const c_char, frame: *mut CAudioFrame) -> i32,
    pub update_params: extern "C" fn(instance: *mut c_void, params_json: *const c_char) -> i32,
    pub flush: extern "C" fn(instance: *mut c_void) -> i32,
    pub destroy_instance: extern "C" fn(instance: *mut c_void),
    pub get_source_config: Option<extern "C" fn(instance: *mut c_void, out: *mut CSourceConfig) -> i32>,
    pub tick: Option<extern "C" fn(instance: *mut c_void, out: *mut CAudioFrame) -> i32>,
    pub get_runtime_param_schema: Option<extern "C" fn(instance: *mut c_void) -> *const c_char>,
    pub on_upstream_hint: Option<extern "C" fn(instance: *mut c_void, hint_json: *const c_char)>,
}

/// Borrows a C string argument from the host; `None` for NULL or text that is not UTF-8.
///
/// # Safety
/// `text` must be NULL or point at a NUL-terminated string that outlives the borrow.
pub unsafe fn c_str_arg<'a>(text: *const c_char) -> Option<&'a str> {
    if text.is_null() {
        return None;
    }
    CStr::from_ptr(text).to_str().ok()
}

/// Reads the number stored under `key` in a flat JSON object.
///
/// Parameters are small flat objects such as `{"gain_db": -6}`; this avoids a JSON
/// dependency, which the zero-dependency, offline build of the sample tree cannot have.
pub fn json_number(json: &str, key: &str) -> Option<f64> {
    let quoted = format!("\"{key}\"");
    let after_key = &json[json.find(&quoted)? + quoted.len()..];
    let after_colon = after_key.trim_start().strip_prefix(':')?.trim_start();
    let end = after_colon
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E')))
        .unwrap_or(after_colon.len());
    after_colon[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::json_number;

    #[test]
    fn reads_a_number_after_its_key() {
        assert_eq!(json_number(r#"{"a": 1, "gain_db" : -6.5}"#, "gain_db"), Some(-6.5));
    }

    #[test]
    fn missing_key_is_none() {
        assert_eq!(json_number(r#"{"a": 1}"#, "gain_db"), None);
    }
}
