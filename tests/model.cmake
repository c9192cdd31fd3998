dpo_test(NAME test_model SOURCES test_model.c LIBS dpo_model)
# TP=2 on two ranks against TP=1: same log-probs, same gradient slab per tensor.
dpo_test_run(NAME test_model_tp2 TARGET test_model NP 2 ARGS --tp)
