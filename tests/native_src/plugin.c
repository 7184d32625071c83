/*
 * Test fixture: one StreamKit native plugin, compiled into many variants.
 *
 * tests/fixturelib.py compiles this file with different -D macros, compilers and linker flags
 * to produce the libraries the checker and prober tests need, good and broken. Each macro
 * below changes one thing, so that a variant differs from the good library only in the fault
 * it is named after.
 *
 *   PLUGIN_KIND               node kind, a C string literal (default "fixture")
 *   PLUGIN_API_VERSION        the version field of the function table (default 9)
 *   PLUGIN_NO_ENTRY           do not define streamkit_native_plugin_api at all
 *   PLUGIN_ENTRY_HIDDEN       define it with hidden visibility (absent from .dynsym)
 *   PLUGIN_ENTRY_WEAK         define it as a weak symbol (still loadable)
 *   PLUGIN_ENTRY_AS_OBJECT    export a data object under the entry name, not a function
 *   PLUGIN_ENTRY_UNDEFINED    reference the entry name without defining it (UND in .dynsym)
 *   PLUGIN_ENTRY_RETURNS_NULL the entry function returns NULL
 *   PLUGIN_USE_DEPENDENCY     call fixture_dependency_answer() from another library
 *   PLUGIN_FREESTANDING       use no C library (for a foreign-architecture build with -nostdlib)
 *   PLUGIN_WITH_MAIN          add main(), to build an executable misnamed .so
 *   CTOR_ABORT                a constructor calls abort()
 *   CTOR_HANG                 a constructor never returns (sleeps in a loop)
 *   CTOR_FORK                 a constructor forks a child that sleeps CTOR_FORK_CHILD_SECONDS;
 *                             the child's pid goes to $FIXTURE_CHILD_PID_FILE when set
 *   CTOR_WRITE_FILE           a constructor writes CTOR_MARKER_NAME into the current directory
 *
 * Compiled as C++ (g++, no extern "C"), the entry symbol comes out mangled.
 * The layout follows the StreamKit native ABI: the table starts with a uint32_t version,
 * then function pointers, the first of which is get_metadata; the metadata starts with kind.
 */
#include <stddef.h>
#include <stdint.h>

#ifndef PLUGIN_FREESTANDING
#include <stdlib.h>
#endif
#if defined(CTOR_HANG) || defined(CTOR_FORK) || defined(CTOR_WRITE_FILE)
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#endif

#ifndef PLUGIN_KIND
#define PLUGIN_KIND "fixture"
#endif
#ifndef PLUGIN_API_VERSION
#define PLUGIN_API_VERSION 9
#endif
#ifndef CTOR_FORK_CHILD_SECONDS
#define CTOR_FORK_CHILD_SECONDS 30
#endif
#ifndef CTOR_MARKER_NAME
#define CTOR_MARKER_NAME "streamkit-fixture-ctor-ran"
#endif

#define STATUS_OK 0
#define STATUS_ERROR (-1)

typedef struct CPin {
    const char *name;
    const char *packet_type;
} CPin;

typedef struct CNodeMetadata {
    const char *kind;
    const char *description;
    const CPin *inputs;
    size_t inputs_count;
    const CPin *outputs;
    size_t outputs_count;
    const char *param_schema;
    const char *const *categories;
    size_t categories_count;
} CNodeMetadata;

typedef struct CAudioFrame {
    float *samples;
    size_t sample_count;
    uint32_t sample_rate;
    uint16_t channels;
} CAudioFrame;

typedef struct CSourceConfig {
    uint32_t sample_rate;
    uint16_t channels;
    uint32_t frame_samples;
} CSourceConfig;

typedef struct CNativePluginAPI {
    uint32_t version;
    const CNodeMetadata *(*get_metadata)(void);
    void *(*create_instance)(const char *params_json);
    int32_t (*process_packet)(void *instance, const char *input_pin, CAudioFrame *frame);
    int32_t (*update_params)(void *instance, const char *params_json);
    int32_t (*flush)(void *instance);
    void (*destroy_instance)(void *instance);
    int32_t (*get_source_config)(void *instance, CSourceConfig *out);
    int32_t (*tick)(void *instance, CAudioFrame *out);
    const char *(*get_runtime_param_schema)(void *instance);
    void (*on_upstream_hint)(void *instance, const char *hint_json);
} CNativePluginAPI;

/* The node: a pass-through that scales samples by a fixed factor of 1. */
typedef struct Passthrough {
    float factor;
} Passthrough;

static const CPin INPUTS[] = {{"in", "audio/f32"}};
static const CPin OUTPUTS[] = {{"out", "audio/f32"}};
static const char *const CATEGORIES[] = {"testing"};
static const char PARAM_SCHEMA[] = "{\"type\":\"object\",\"properties\":{}}";

static const CNodeMetadata METADATA = {
    PLUGIN_KIND,
    "Test fixture: passes audio through unchanged",
    INPUTS,
    1,
    OUTPUTS,
    1,
    PARAM_SCHEMA,
    CATEGORIES,
    1,
};

#ifdef PLUGIN_USE_DEPENDENCY
int fixture_dependency_answer(void);
#endif

static const CNodeMetadata *get_metadata(void)
{
    return &METADATA;
}

static void *create_instance(const char *params_json)
{
    Passthrough *state;

    (void)params_json;
#ifdef PLUGIN_USE_DEPENDENCY
    /* The call keeps the DT_NEEDED entry even under --as-needed. */
    if (fixture_dependency_answer() != 42)
        return NULL;
#endif
#ifdef PLUGIN_FREESTANDING
    static Passthrough only_instance;
    state = &only_instance;
#else
    state = (Passthrough *)malloc(sizeof *state);
    if (state == NULL)
        return NULL;
#endif
    state->factor = 1.0f;
    return state;
}

static int32_t process_packet(void *instance, const char *input_pin, CAudioFrame *frame)
{
    const Passthrough *state = (const Passthrough *)instance;
    size_t i;

    (void)input_pin;
    if (state == NULL || frame == NULL || frame->samples == NULL)
        return STATUS_ERROR;
    for (i = 0; i < frame->sample_count; i++)
        frame->samples[i] *= state->factor;
    return STATUS_OK;
}

static int32_t update_params(void *instance, const char *params_json)
{
    (void)params_json; /* no parameters */
    return instance == NULL ? STATUS_ERROR : STATUS_OK;
}

static int32_t flush(void *instance)
{
    (void)instance;
    return STATUS_OK;
}

static void destroy_instance(void *instance)
{
#ifdef PLUGIN_FREESTANDING
    (void)instance;
#else
    free(instance);
#endif
}

static const CNativePluginAPI API = {
    PLUGIN_API_VERSION,
    get_metadata,
    create_instance,
    process_packet,
    update_params,
    flush,
    destroy_instance,
    NULL,
    NULL,
    NULL,
    NULL,
};

#if defined(PLUGIN_ENTRY_HIDDEN)
#define ENTRY_ATTRIBUTES __attribute__((visibility("hidden")))
#elif defined(PLUGIN_ENTRY_WEAK)
#define ENTRY_ATTRIBUTES __attribute__((weak, visibility("default")))
#else
#define ENTRY_ATTRIBUTES __attribute__((visibility("default")))
#endif

#if defined(PLUGIN_ENTRY_AS_OBJECT)
/* Data under the entry name: dlsym finds it, but it is not a function. */
ENTRY_ATTRIBUTES const CNativePluginAPI *const streamkit_native_plugin_api = &API;
#elif defined(PLUGIN_ENTRY_UNDEFINED)
/* Referenced, never defined: the linker leaves an undefined dynamic symbol. */
const CNativePluginAPI *streamkit_native_plugin_api(void);
__attribute__((visibility("default"))) const void *fixture_entry_reference(void)
{
    return streamkit_native_plugin_api() == &API ? (const void *)&API : NULL;
}
#elif !defined(PLUGIN_NO_ENTRY)
ENTRY_ATTRIBUTES const CNativePluginAPI *streamkit_native_plugin_api(void)
{
#ifdef PLUGIN_ENTRY_RETURNS_NULL
    (void)&API; /* the table exists, the entry point just does not hand it out */
    return NULL;
#else
    return &API;
#endif
}
#else
/* Without an entry point the table would be unused; keep it reachable for the same layout. */
__attribute__((visibility("default"))) const void *fixture_table_without_entry(void)
{
    return &API;
}
#endif

#ifdef CTOR_ABORT
__attribute__((constructor)) static void abort_on_load(void)
{
    abort();
}
#endif

#ifdef CTOR_HANG
__attribute__((constructor)) static void hang_on_load(void)
{
    static const char message[] = "streamkit fixture: constructor hanging\n";

    /* Announce the hang so a test can tell "stuck in the constructor" from "slow to start". */
    if (write(2, message, sizeof message - 1) < 0) {
        /* nothing to do: the hang is the point */
    }
    for (;;)
        sleep(1);
}
#endif

#ifdef CTOR_FORK
__attribute__((constructor)) static void fork_on_load(void)
{
    const char *pid_file = getenv("FIXTURE_CHILD_PID_FILE");
    pid_t child = fork();

    if (child == 0) {
        /* The child keeps the parent's stdio open and stays in its process group. */
        int i;
        for (i = 0; i < CTOR_FORK_CHILD_SECONDS; i++)
            sleep(1);
        _exit(0);
    }
    if (child > 0 && pid_file != NULL) {
        /* Written before dlopen returns, so the loader's exit means the file is complete. */
        FILE *out = fopen(pid_file, "w");
        if (out != NULL) {
            fprintf(out, "%ld\n", (long)child);
            fclose(out);
        }
    }
}
#endif

#ifdef CTOR_WRITE_FILE
__attribute__((constructor)) static void write_file_on_load(void)
{
    static const char text[] = "written by a plugin constructor\n";
    int fd = open(CTOR_MARKER_NAME, O_WRONLY | O_CREAT | O_TRUNC, 0644);

    if (fd >= 0) {
        if (write(fd, text, sizeof text - 1) < 0) {
            /* the test notices the empty file */
        }
        close(fd);
    }
}
#endif

#ifdef PLUGIN_WITH_MAIN
int main(void)
{
    return get_metadata()->kind[0] == '\0';
}
#endif
