# Loss family and optimizer (src/optim/loss.c, src/optim/optim.c).
dpo_test(NAME test_loss SOURCES test_loss.c LIBS dpo_optim)
dpo_test(NAME test_optim SOURCES test_optim.c LIBS dpo_optim)
# The same program on two ranks: the gradient norm at tensor_parallel_size 2.
dpo_test_run(NAME test_optim_tp2 TARGET test_optim NP 2)
# ZeRO-1 against the replicated optimizer at DP 4 and at TP 2 x DP 2.
dpo_test_run(NAME test_optim_np4 TARGET test_optim NP 4)
set_tests_properties(test_optim_np4 PROPERTIES PROCESSORS 2)
