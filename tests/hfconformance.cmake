# Our model and loss family against Hugging Face transformers on the committed tiny
# models of tests/data/hf (tests/fixtures/gen_hf_fixtures.py), at TP 1 and TP 2.
dpo_test(NAME test_hf_conformance SOURCES test_hf_conformance.c LIBS dpo_hf dpo_optim
         ARGS ${PROJECT_SOURCE_DIR}/tests/data/hf)
dpo_test_run(NAME test_hf_conformance_tp2 TARGET test_hf_conformance NP 2
             ARGS ${PROJECT_SOURCE_DIR}/tests/data/hf)
# TP 4: the 2 KV heads replicated on 2 ranks each, vocabulary 259 split 4 ways.
dpo_test_run(NAME test_hf_conformance_tp4 TARGET test_hf_conformance NP 4
             ARGS ${PROJECT_SOURCE_DIR}/tests/data/hf)
set_tests_properties(test_hf_conformance_tp4 PROPERTIES PROCESSORS 2)
