# Helper scripts for users: the NeMo RL config translator and the metrics plotter.
dpo_script_test(test_migration_tools migration_tools.sh)
# --version of every program.
dpo_script_test(test_version version.sh)
