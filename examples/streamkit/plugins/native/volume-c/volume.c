/*
 * volume_c: a StreamKit native plugin written in C.
 *
 * It scales audio samples by a linear volume (0..2) and can mute them. It exports the
 * entry point streamkit_native_plugin_api, which returns the plugin's function table
 * (ABI version 9 layout: version first, then function pointers).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define API_VERSION 9u
#define STATUS_OK 0
#define STATUS_ERROR (-1)

typedef struct CPin {
    const char *name;
    const char *packet_type;
} CPin;

typedef struct CNodeMetadata {
    const char *kind; /* first: the host reads it first */
    const char *description;
    const CPin *inputs;
    size_t inputs_count;
    const CPin *outputs;
    size_t outputs_count;
    const char *param_schema; /* JSON text */
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
    /* Optional entry points: NULL when the node does not need them. */
    int32_t (*get_source_config)(void *instance, CSourceConfig *out);
    int32_t (*tick)(void *instance, CAudioFrame *out);
    const char *(*get_runtime_param_schema)(void *instance);
    void (*on_upstream_hint)(void *instance, const char *hint_json);
} CNativePluginAPI;

typedef struct Volume {
    float volume;
    int muted;
} Volume;

static const char PARAM_SCHEMA[] =
    "{\"type\":\"object\",\"properties\":{"
    "\"volume\":{\"type\":\"number\",\"minimum\":0,\"maximum\":2,\"default\":1},"
    "\"mute\":{\"type\":\"boolean\",\"default\":false}}}";

static const CPin INPUTS[] = {{"in", "audio/f32"}};
static const CPin OUTPUTS[] = {{"out", "audio/f32"}};
static const char *const CATEGORIES[] = {"audio", "filters"};

static const CNodeMetadata METADATA = {
    "volume_c",
    "Scales audio samples by a linear volume, with mute",
    INPUTS,
    sizeof INPUTS / sizeof INPUTS[0],
    OUTPUTS,
    sizeof OUTPUTS / sizeof OUTPUTS[0],
    PARAM_SCHEMA,
    CATEGORIES,
    sizeof CATEGORIES / sizeof CATEGORIES[0],
};

/* Parameters are small flat JSON objects; a full JSON parser would be out of proportion. */
static const char *json_value(const char *json, const char *key)
{
    char quoted[64];
    const char *at;
    size_t key_len = strlen(key);

    if (json == NULL || key_len + 3 > sizeof quoted)
        return NULL;
    quoted[0] = '"';
    memcpy(quoted + 1, key, key_len);
    quoted[key_len + 1] = '"';
    quoted[key_len + 2] = '\0';
    at = strstr(json, quoted);
    if (at == NULL)
        return NULL;
    at += key_len + 2;
    while (*at == ' ' || *at == '\t' || *at == '\n' || *at == '\r')
        at++;
    if (*at != ':')
        return NULL;
    at++;
    while (*at == ' ' || *at == '\t' || *at == '\n' || *at == '\r')
        at++;
    return at;
}

static void apply_params(Volume *state, const char *params_json)
{
    const char *value = json_value(params_json, "volume");
    const char *mute = json_value(params_json, "mute");

    if (value != NULL) {
        char *end;
        float volume = strtof(value, &end);
        if (end != value)
            state->volume = volume < 0.0f ? 0.0f : (volume > 2.0f ? 2.0f : volume);
    }
    if (mute != NULL)
        state->muted = strncmp(mute, "true", 4) == 0;
}

static const CNodeMetadata *get_metadata(void)
{
    return &METADATA;
}

static void *create_instance(const char *params_json)
{
    Volume *state = malloc(sizeof *state);

    if (state == NULL)
        return NULL;
    state->volume = 1.0f;
    state->muted = 0;
    apply_params(state, params_json);
    return state;
}

static int32_t process_packet(void *instance, const char *input_pin, CAudioFrame *frame)
{
    const Volume *state = instance;
    float factor;
    size_t i;

    (void)input_pin;
    if (state == NULL || frame == NULL || frame->samples == NULL)
        return STATUS_ERROR;
    factor = state->muted ? 0.0f : state->volume;
    for (i = 0; i < frame->sample_count; i++)
        frame->samples[i] *= factor;
    return STATUS_OK;
}

static int32_t update_params(void *instance, const char *params_json)
{
    if (instance == NULL || params_json == NULL)
        return STATUS_ERROR;
    apply_params(instance, params_json);
    return STATUS_OK;
}

static int32_t flush(void *instance)
{
    (void)instance; /* nothing is buffered */
    return STATUS_OK;
}

static void destroy_instance(void *instance)
{
    free(instance);
}

static const char *get_runtime_param_schema(void *instance)
{
    (void)instance;
    return PARAM_SCHEMA;
}

static const CNativePluginAPI API = {
    API_VERSION,
    get_metadata,
    create_instance,
    process_packet,
    update_params,
    flush,
    destroy_instance,
    NULL, /* get_source_config: not a source */
    NULL, /* tick */
    get_runtime_param_schema,
    NULL, /* on_upstream_hint */
};

/* The entry point the StreamKit host looks up with dlsym. */
__attribute__((visibility("default"))) const CNativePluginAPI *streamkit_native_plugin_api(void)
{
    return &API;
}
