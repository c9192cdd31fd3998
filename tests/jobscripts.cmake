# Slurm and PBS job scripts (jobscripts/, doc/cluster.md): shellcheck, dry runs at 1, 2
# and 4 nodes, and the requeue-near-the-wall-clock-limit trap. Skips (77) without shellcheck.
dpo_script_test(jobscripts jobscripts.sh)
set_tests_properties(jobscripts PROPERTIES LABELS jobscripts)
