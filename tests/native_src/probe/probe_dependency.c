/* A dependency for the probe fixture's missing-dependency variant (see probe_plugin.c). */
__attribute__((visibility("default"))) int probe_dependency_answer(void)
{
    return 42;
}
