# dpo_pairs: NeMo Gym rollouts -> DPO pairs (src/prep/pairs.c, src/tools/dpo_pairs.c).
# test_pairs: the Python-compatible pieces (float repr, json.dumps, sum) and the
# pairing rules; pairs_cli: the program against outputs of NeMo Gym's own script
# (tests/data/pairs, made by tests/fixtures/gen_pairs_expected.py), bad input,
# --skip-invalid, --context full, atomic output.
dpo_test(NAME test_pairs SOURCES test_pairs.c LIBS dpo_pairs_lib LABELS pairs)
dpo_script_test(pairs_cli pairs.sh)
set_tests_properties(pairs_cli PROPERTIES LABELS pairs)
