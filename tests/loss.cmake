# Loss family and optimizer (src/optim/loss.c, src/optim/optim.c).
dpo_test(NAME test_loss SOURCES test_loss.c LIBS dpo_optim)
dpo_test(NAME test_optim SOURCES test_optim.c LIBS dpo_optim)
# The same program on two ranks: the gradient norm at tensor_parallel_size 2.
dpo_test_run(NAME test_optim_tp2 TARGET test_optim NP 2)
# ZeRO-1 against the replicated optimizer at DP 4 and at TP 2 x DP 2.
dpo_test_run(NAME test_optim_np4 TARGET test_optim NP 4)
set_tests_properties(test_optim_np4 PROPERTIES PROCESSORS 2)
# Frozen tensors and the bucketed DP gradient reduction from the backward
# (src/optim/grad_sync.c, src/optim/schedule.c), at 1, 2 and 4 ranks.
dpo_test(NAME test_grad_sync SOURCES test_grad_sync.c LIBS dpo_optim)
dpo_test_run(NAME test_grad_sync_np2 TARGET test_grad_sync NP 2)
dpo_test_run(NAME test_grad_sync_np4 TARGET test_grad_sync NP 4)
set_tests_properties(test_grad_sync_np4 PROPERTIES PROCESSORS 2)
