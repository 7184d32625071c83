/*
 * Test fixture for the load probe (tests/test_probe.py): a StreamKit native plugin whose
 * constructor, entry point and metadata misbehave on request, one -D macro per fault.
 *
 *   PROBE_KIND              node kind, a C string literal (default "probe_ok")
 *   PROBE_KIND_INVALID_UTF8 the kind is "probe_\xff\xfe", not valid UTF-8
 *   PROBE_API_VERSION       the table's version field (default 9)
 *   PROBE_NO_ENTRY          do not define streamkit_native_plugin_api
 *   PROBE_NULL_API          the entry function returns NULL
 *   PROBE_NULL_METADATA     get_metadata returns NULL
 *   PROBE_METADATA_CRASH    get_metadata dies of SIGSEGV
 *   PROBE_METADATA_HANG     get_metadata never returns
 *   PROBE_USE_DEPENDENCY    needs probe_dependency_answer() from another library
 *
 * What the constructor does, in this order (several may be combined):
 *   PROBE_CTOR_REPORT=path  write its working directory, session, limits and environment to path
 *   PROBE_CTOR_WRITE_FILE   create PROBE_MARKER_NAME in the working directory
 *   PROBE_CTOR_FLOOD        write 10 MB to stdout and 10 MB to stderr
 *   PROBE_CTOR_SCRIBBLE     write a line that is not JSON to every inherited pipe above stderr
 *   PROBE_CTOR_CLOSE_FDS    close every descriptor above stderr, as daemonising code does
 *   PROBE_CTOR_FORK=path    fork a child that sleeps for ever holding every inherited descriptor;
 *                           the child's pid goes to path before the constructor returns
 *   PROBE_CTOR_ABORT        abort()
 *   PROBE_CTOR_EXIT=status  exit(status)
 *   PROBE_CTOR_SPIN         spin on the CPU for ever
 *
 * The layout follows the StreamKit native ABI: the table starts with a uint32_t version, then
 * function pointers, the first of which is get_metadata; the metadata starts with the kind.
 */
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <fcntl.h>
#include <unistd.h>

#ifdef PROBE_KIND_INVALID_UTF8
#define PROBE_KIND "probe_\377\376"
#endif
#ifndef PROBE_KIND
#define PROBE_KIND "probe_ok"
#endif
#ifndef PROBE_API_VERSION
#define PROBE_API_VERSION 9
#endif
#ifndef PROBE_MARKER_NAME
#define PROBE_MARKER_NAME "probe-constructor-was-here"
#endif

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

typedef struct CNativePluginAPI {
    uint32_t version;
    const CNodeMetadata *(*get_metadata)(void);
    void *(*create_instance)(const char *params_json);
    int32_t (*process_packet)(void *instance, const char *input_pin, void *frame);
    int32_t (*update_params)(void *instance, const char *params_json);
    int32_t (*flush)(void *instance);
    void (*destroy_instance)(void *instance);
    void *optional[4]; /* get_source_config, tick, get_runtime_param_schema, on_upstream_hint */
} CNativePluginAPI;

static const CPin INPUTS[] = {{"in", "audio/f32"}};
static const CPin OUTPUTS[] = {{"out", "audio/f32"}};
static const char *const CATEGORIES[] = {"testing"};

static const CNodeMetadata METADATA = {
    PROBE_KIND, "Probe fixture", INPUTS, 1, OUTPUTS, 1, "{\"type\":\"object\"}", CATEGORIES, 1,
};

#ifdef PROBE_USE_DEPENDENCY
int probe_dependency_answer(void);
#endif

static const CNodeMetadata *get_metadata(void)
{
#if defined(PROBE_NULL_METADATA)
    return NULL;
#elif defined(PROBE_METADATA_CRASH)
    raise(SIGSEGV);
#elif defined(PROBE_METADATA_HANG)
    for (;;)
        pause();
#endif
    return &METADATA;
}

static void *create_instance(const char *params_json)
{
    (void)params_json;
#ifdef PROBE_USE_DEPENDENCY
    if (probe_dependency_answer() != 42)
        return NULL;
#endif
    return malloc(1);
}

static int32_t process_packet(void *instance, const char *input_pin, void *frame)
{
    (void)input_pin;
    (void)frame;
    return instance == NULL ? -1 : 0;
}

static int32_t update_params(void *instance, const char *params_json)
{
    (void)params_json;
    return instance == NULL ? -1 : 0;
}

static int32_t flush(void *instance)
{
    (void)instance;
    return 0;
}

static void destroy_instance(void *instance)
{
    free(instance);
}

static const CNativePluginAPI API = {
    PROBE_API_VERSION, get_metadata, create_instance, process_packet, update_params, flush,
    destroy_instance, {NULL, NULL, NULL, NULL},
};

#ifndef PROBE_NO_ENTRY
__attribute__((visibility("default"))) const CNativePluginAPI *streamkit_native_plugin_api(void)
{
#ifdef PROBE_NULL_API
    (void)&API;
    return NULL;
#else
    return &API;
#endif
}
#else
__attribute__((visibility("default"))) const void *probe_table_without_entry(void)
{
    return &API;
}
#endif

static void write_all(int fd, const char *data, size_t size)
{
    while (size > 0) {
        ssize_t written = write(fd, data, size);
        if (written < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        data += written;
        size -= (size_t)written;
    }
}

#ifdef PROBE_CTOR_REPORT
static unsigned long long soft_limit(int which)
{
    struct rlimit limit;
    if (getrlimit(which, &limit) != 0)
        return 0;
    return limit.rlim_cur == RLIM_INFINITY ? (unsigned long long)-1 : (unsigned long long)limit.rlim_cur;
}

static void write_report(void)
{
    char cwd[4096];
    const char *secret = getenv("PROBE_TEST_SECRET");
    FILE *out = fopen(PROBE_CTOR_REPORT, "w");

    if (out == NULL)
        return;
    if (getcwd(cwd, sizeof cwd) == NULL)
        strcpy(cwd, "?");
    fprintf(out, "cwd=%s\n", cwd);
    fprintf(out, "home=%s\n", getenv("HOME") ? getenv("HOME") : "");
    fprintf(out, "session_leader=%d\n", getsid(0) == getpid());
    fprintf(out, "group_leader=%d\n", getpgrp() == getpid());
    fprintf(out, "core=%llu\n", soft_limit(RLIMIT_CORE));
    fprintf(out, "data=%llu\n", soft_limit(RLIMIT_DATA));
    fprintf(out, "cpu=%llu\n", soft_limit(RLIMIT_CPU));
    fprintf(out, "secret=%s\n", secret ? secret : "");
    fclose(out);
}
#endif

__attribute__((constructor)) static void on_load(void)
{
#ifdef PROBE_CTOR_REPORT
    write_report();
#endif
#ifdef PROBE_CTOR_WRITE_FILE
    {
        int fd = open(PROBE_MARKER_NAME, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            write_all(fd, "written by a plugin constructor\n", 32);
            close(fd);
        }
    }
#endif
#ifdef PROBE_CTOR_FLOOD
    {
        static char block[1 << 16];
        int i;
        memset(block, 'x', sizeof block);
        for (i = 0; i < 160; i++) { /* 160 * 64 KiB = 10 MiB each */
            write_all(1, block, sizeof block);
            write_all(2, block, sizeof block);
        }
    }
#endif
#ifdef PROBE_CTOR_SCRIBBLE
    {
        static const char line[] = "this is not the probe protocol\n";
        struct stat info;
        int fd;
        for (fd = 3; fd < 1024; fd++)
            if (fstat(fd, &info) == 0 && S_ISFIFO(info.st_mode))
                write_all(fd, line, sizeof line - 1);
    }
#endif
#ifdef PROBE_CTOR_CLOSE_FDS
    {
        int fd;
        for (fd = 3; fd < 1024; fd++)
            close(fd);
    }
#endif
#ifdef PROBE_CTOR_FORK
    {
        pid_t child = fork();
        if (child == 0) {
            for (;;)
                pause(); /* holds every descriptor it inherited, for ever */
        }
        if (child > 0) {
            FILE *out = fopen(PROBE_CTOR_FORK, "w");
            if (out != NULL) {
                fprintf(out, "%ld\n", (long)child);
                fclose(out);
            }
        }
    }
#endif
#ifdef PROBE_CTOR_ABORT
    abort();
#endif
#ifdef PROBE_CTOR_EXIT
    exit(PROBE_CTOR_EXIT);
#endif
#ifdef PROBE_CTOR_SPIN
    {
        volatile unsigned long spins = 0;
        for (;;)
            spins++;
    }
#endif
}
