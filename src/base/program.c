// program.c — the program's name and version (dpo/program.h).
#include "dpo/program.h"

#include <stdio.h>
#include <string.h>

#include "dpo/version.h"

static char g_producer[128] = "dpo_hpc " DPO_VERSION_FULL;

void dpo_program_set(const char *name) {
    snprintf(g_producer, sizeof g_producer, "%s %s", name && name[0] ? name : "dpo_hpc",
             DPO_VERSION_FULL);
}

const char *dpo_producer(void) { return g_producer; }

const char *dpo_version(void) { return DPO_VERSION_FULL; }

bool dpo_version_option(const char *arg, bool print) {
    if (!arg || strcmp(arg, "--version") != 0) return false;
    if (print) {
        printf("%s\n", g_producer);
        fflush(stdout);
    }
    return true;
}
