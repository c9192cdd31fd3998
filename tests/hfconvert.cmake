# Hugging Face interoperability (doc/hf-interop.md): the safetensors reader/writer,
# and dpo_convert / dpo_hpc with Hugging Face folders end to end.
dpo_test(NAME test_safetensors SOURCES test_safetensors.c LIBS dpo_hf LABELS hf)
dpo_script_test(test_hfconvert hfconvert.sh)
set_tests_properties(test_hfconvert PROPERTIES PROCESSORS 2 LABELS hf)
