/*
 * Test fixture: a plain shared library a plugin variant links against (PLUGIN_USE_DEPENDENCY).
 *
 * Built under two names: one is shipped next to its plugin (vendored, found through
 * RUNPATH $ORIGIN); the other is deleted after linking, so that the plugin's DT_NEEDED
 * names a library that exists nowhere on the machine.
 */
__attribute__((visibility("default"))) int fixture_dependency_answer(void)
{
    return 42;
}
