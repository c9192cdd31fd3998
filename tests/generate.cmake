# Generation with a KV cache (src/model/generate.c): cached vs full-forward logits, greedy
# ids against transformers' generate (tests/data/hf/<name>/generate.json), sampling;
# at TP 1, 2 and 4.
dpo_test(NAME test_generate SOURCES test_generate.c LIBS dpo_hf
         ARGS ${PROJECT_SOURCE_DIR}/tests/data/hf)
dpo_test_run(NAME test_generate_tp2 TARGET test_generate NP 2
             ARGS ${PROJECT_SOURCE_DIR}/tests/data/hf)
dpo_script_test(generate_cli generate_cli.sh)
# TP 4: KV heads replicated on 2 ranks each, vocabulary 259 split 4 ways (padding).
dpo_test_run(NAME test_generate_tp4 TARGET test_generate NP 4
             ARGS ${PROJECT_SOURCE_DIR}/tests/data/hf)
set_tests_properties(test_generate_tp4 PROPERTIES PROCESSORS 2)
