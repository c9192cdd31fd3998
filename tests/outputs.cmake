# Outputs that are inputs, half-made run directories, metrics across resumes and a
# full disk under the metrics (issue 13). Scripts in tests/outputs_*.sh.
dpo_script_test(outputs_same_file outputs_same_file.sh)
set_tests_properties(outputs_same_file PROPERTIES LABELS outputs)
dpo_script_test(outputs_late_failure outputs_late_failure.sh)
set_tests_properties(outputs_late_failure PROPERTIES LABELS outputs PROCESSORS 2)
dpo_script_test(outputs_metrics_resume outputs_metrics_resume.sh)
set_tests_properties(outputs_metrics_resume PROPERTIES LABELS outputs)
dpo_script_test(outputs_metrics_full outputs_metrics_full.sh)
set_tests_properties(outputs_metrics_full PROPERTIES LABELS outputs PROCESSORS 2)
