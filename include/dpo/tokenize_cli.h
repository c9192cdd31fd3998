// tokenize_cli.h — `dpo_prep tokenize --tokenizer DIR`: a conformance filter that
// reads JSON lines {"text": ...} on stdin and writes {"ids": [...]} lines on stdout
// (no special tokens added), so our ids can be compared with the Python package's.
#ifndef DPO_TOKENIZE_CLI_H
#define DPO_TOKENIZE_CLI_H

// argv[0] is "tokenize". Returns the process exit status: 0, 1 on a data or
// tokenizer error (the message names <stdin>:LINE), 2 on a usage error.
int tokenize_cli_main(int argc, char **argv);

#endif
