# dpo_prep (src/prep*.c, src/text/chat_template.c, src/tools/dpo_prep.c): every input format
# rendered and tokenised against Hugging Face references, bad input, over-long
# accounting, the demo's JSONL path.
add_executable(prep_check prep_check.c)
target_link_libraries(prep_check PRIVATE dpo_testutil dpo_text dpo_io)
set_target_properties(prep_check PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)

# Formats x templates x tokenizers (the real ones from ../shared/testdata when present).
dpo_script_test(test_prep_formats prep_formats.sh)
# Bad records: file:line messages, non-zero exit, no output; --skip-invalid counts.
dpo_script_test(test_prep_errors prep_errors.sh)
# --max-length with drop / truncate: counts, truncated lengths, stored attributes.
dpo_script_test(test_prep_overlong prep_overlong.sh)
set_tests_properties(test_prep_formats test_prep_errors test_prep_overlong PROPERTIES LABELS prep)
# The demo's JSONL + tokenizer.json path gives the directly written dataset.
dpo_script_test(test_demo_data_jsonl demo_data_jsonl.sh)
set_tests_properties(test_demo_data_jsonl PROPERTIES LABELS prep)
