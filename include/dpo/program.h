// program.h — who is running: the program's name and the build's version
// (dpo/version.h, generated at configure time). --version prints it, and every
// checkpoint and dataset file stores it as its `producer` attribute.
#ifndef DPO_PROGRAM_H
#define DPO_PROGRAM_H

#include <stdbool.h>

// Names the running program ("dpo_prep"); main calls it first. Programs that
// never call it are named "dpo_hpc", the project.
void dpo_program_set(const char *name);

// "<program> <version>", e.g. "dpo_prep 0.1.0 (git abc1234)"; "dpo_prep 0.1.0"
// for a build configured outside a git checkout.
const char *dpo_producer(void);

// The build's version alone: "0.1.0 (git abc1234)" or "0.1.0".
const char *dpo_version(void);

// True when arg is "--version"; then dpo_producer() and a newline are printed on
// stdout (when `print`), for main to exit with 0.
bool dpo_version_option(const char *arg, bool print);

#endif
