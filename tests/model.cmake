dpo_test(NAME test_model SOURCES test_model.c LIBS dpo_optim)
# TP on N ranks against TP=1: same log-probs, same gradient slab per tensor. TP=2
# splits the 2 KV heads; TP=4 replicates them (each KV head on 2 ranks, 4 with one
# KV head), with vocabularies 2 and 4 do not divide.
dpo_test_run(NAME test_model_tp2 TARGET test_model NP 2 ARGS --tp)
dpo_test_run(NAME test_model_tp4 TARGET test_model NP 4 ARGS --tp)
