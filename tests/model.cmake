dpo_test(NAME test_model SOURCES test_model.c LIBS dpo_model)
dpo_test(NAME test_model_tp2 SOURCES test_model.c LIBS dpo_model NP 2 ARGS --tp)
