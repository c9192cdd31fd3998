// tokenize_cli_test_main.c — runs `dpo_prep tokenize` without dpo_prep, so the CLI
// tests depend only on the tokenizer: `tokenize_cli_test tokenize --tokenizer DIR`.
#include "dpo/tokenize_cli.h"

int main(int argc, char **argv) { return tokenize_cli_main(argc - 1, argv + 1); }
