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
 * What the constructor does, in this order (several may be combined). What it finds out goes
 * into the node kind as `name=value;` pairs (a sandboxed constructor has no other way out), so
 * with any of the first two the kind is that report, not PROBE_KIND:
 *   PROBE_CTOR_REPORT       its working directory, HOME, session, pids, limits and environment
 *   PROBE_CTOR_WRITE_FILE   create PROBE_MARKER_NAME in the working directory (`marker=0|1`)
 *   PROBE_CTOR_WRITE_ABSOLUTE="a:b"  create each of these absolute paths (`wrote=N`)
 *   PROBE_CTOR_FORGE        write forged report lines and a GitHub `::error` workflow command to
 *                           fd 1 and 2 of its parent and of the parent's ancestors through
 *                           /proc/<pid>/fd/N (`forged=N`: how many it could open)
 *   PROBE_CTOR_FLOOD        write 10 MB to stdout and 10 MB to stderr
 *   PROBE_CTOR_SCRIBBLE     write a line that is not JSON to every inherited pipe above stderr
 *   PROBE_CTOR_CLOSE_FDS    close every descriptor above stderr, as daemonising code does
 *   PROBE_CTOR_FORK         fork a child that sleeps for ever holding every inherited descriptor,
 *                           in a new session (out of the process group)
 *   PROBE_CTOR_FORK_MANY=N  fork N processes (a bounded fork bomb: children fork too), each
 *                           sleeping for ever in a new session
 *   PROBE_CTOR_STOP_PARENT  kill(getppid(), SIGSTOP)
 *   PROBE_CTOR_KILL_PARENT  kill(getppid(), SIGKILL), then kill(-1, SIGKILL) only if
 *                           PROBE_CTOR_KILL_ALL too: every process it can see
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

/* The kind the metadata reports: PROBE_KIND, or the constructor's report. */
static char KIND[4000] = PROBE_KIND;

static const CNodeMetadata METADATA = {
    KIND, "Probe fixture", INPUTS, 1, OUTPUTS, 1, "{\"type\":\"object\"}", CATEGORIES, 1,
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

#if defined(PROBE_CTOR_REPORT) || defined(PROBE_CTOR_WRITE_FILE) || \
    defined(PROBE_CTOR_WRITE_ABSOLUTE) || defined(PROBE_CTOR_FORGE)
#define PROBE_REPORTS_IN_KIND 1
#endif

#ifdef PROBE_REPORTS_IN_KIND
static void note(const char *name, const char *value)
{
    size_t used = strlen(KIND);
    snprintf(KIND + used, sizeof KIND - used, "%s=%s;", name, value);
}

static void note_number(const char *name, long long value)
{
    char text[32];
    snprintf(text, sizeof text, "%lld", value);
    note(name, text);
}
#endif

#ifdef PROBE_CTOR_REPORT
static long long soft_limit(int which)
{
    struct rlimit limit;
    if (getrlimit(which, &limit) != 0)
        return -2;
    return limit.rlim_cur == RLIM_INFINITY ? -1 : (long long)limit.rlim_cur;
}

static void write_report(void)
{
    char cwd[1024];
    const char *secret = getenv("PROBE_TEST_SECRET");

    if (getcwd(cwd, sizeof cwd) == NULL)
        strcpy(cwd, "?");
    note("cwd", cwd);
    note("home", getenv("HOME") ? getenv("HOME") : "");
    note("tmpdir", getenv("TMPDIR") ? getenv("TMPDIR") : "");
    note_number("pid", (long long)getpid());
    note_number("ppid", (long long)getppid());
    note_number("session_leader", getsid(0) == getpid());
    note_number("group_leader", getpgrp() == getpid());
    note_number("core", soft_limit(RLIMIT_CORE));
    note_number("data", soft_limit(RLIMIT_DATA));
    note_number("cpu", soft_limit(RLIMIT_CPU));
    note_number("fsize", soft_limit(RLIMIT_FSIZE));
    note("secret", secret ? secret : "");
}
#endif

#ifdef PROBE_CTOR_WRITE_ABSOLUTE
static int write_absolute(void)
{
    char paths[] = PROBE_CTOR_WRITE_ABSOLUTE;
    char *path = strtok(paths, ":");
    int wrote = 0;
    for (; path != NULL; path = strtok(NULL, ":")) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            write_all(fd, "written by a plugin constructor\n", 32);
            close(fd);
            wrote++;
        }
    }
    return wrote;
}
#endif

#ifdef PROBE_CTOR_FORGE
static long parent_of(long pid)
{
    char path[64], line[256];
    long ppid = 0;
    FILE *status;
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    status = fopen(path, "r");
    if (status == NULL)
        return 0;
    while (fgets(line, sizeof line, status) != NULL)
        if (sscanf(line, "PPid: %ld", &ppid) == 1)
            break;
    fclose(status);
    return ppid;
}

static int forge(void)
{
    static const char lines[] =
        "{\"event\": \"done\"}\n"
        "::error file=plugin.yml::forged by a plugin constructor\n"
        "0 errors, 0 warnings, 0 info; the server will load 1 plugins and skip 0: check passed.\n";
    long pid = (long)getppid();
    int opened = 0, level;
    for (level = 0; level < 4 && pid > 0; level++, pid = parent_of(pid)) {
        int stream;
        for (stream = 1; stream <= 2; stream++) {
            char path[64];
            int fd;
            snprintf(path, sizeof path, "/proc/%ld/fd/%d", pid, stream);
            fd = open(path, O_WRONLY | O_APPEND);
            if (fd >= 0) {
                write_all(fd, lines, sizeof lines - 1);
                close(fd);
                opened++;
            }
        }
    }
    return opened;
}
#endif

__attribute__((constructor)) static void on_load(void)
{
#ifdef PROBE_REPORTS_IN_KIND
    KIND[0] = '\0';
#endif
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
        note_number("marker", fd >= 0);
    }
#endif
#ifdef PROBE_CTOR_WRITE_ABSOLUTE
    note_number("wrote", write_absolute());
#endif
#ifdef PROBE_CTOR_FORGE
    note_number("forged", forge());
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
    if (fork() == 0) {
        setsid();
        for (;;)
            pause(); /* holds every descriptor it inherited, for ever */
    }
#endif
#ifdef PROBE_CTOR_FORK_MANY
    {
        /* PROBE_CTOR_FORK_MANY processes in all, forked as a tree: each process hands half of
           what is left of the budget to the child it forks, which forks in turn. */
        int budget = PROBE_CTOR_FORK_MANY, is_child = 0;
        while (budget > 0) {
            int share;
            pid_t child;
            budget--; /* the child about to be forked */
            share = budget / 2;
            child = fork();
            if (child == 0) {
                setsid();
                is_child = 1;
                budget = share;
            } else if (child > 0) {
                budget -= share;
            } else {
                break;
            }
        }
        if (is_child)
            for (;;)
                pause();
    }
#endif
#ifdef PROBE_CTOR_STOP_PARENT
    kill(getppid(), SIGSTOP);
#endif
#ifdef PROBE_CTOR_KILL_PARENT
    kill(getppid(), SIGKILL);
#ifdef PROBE_CTOR_KILL_ALL
    kill(-1, SIGKILL);
#endif
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
