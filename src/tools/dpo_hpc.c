// dpo_hpc — Direct Preference Optimization of Llama-family models, one rank per
// device:  mpirun -np N dpo_hpc input.cfg [section.key=value ...]
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dpo/backend.h"
#include "dpo/backend_cuda.h"
#include "dpo/backend_profile.h"
#include "dpo/comm.h"
#include "dpo/config.h"
#include "dpo/device_bind.h"
#include "dpo/error.h"
#include "dpo/generate_run.h"
#include "dpo/mesh.h"
#include "dpo/program.h"
#include "dpo/trainer.h"
#include "dpo/util.h"


static void usage(FILE *f) {
    fprintf(f,
            "usage: dpo_hpc [--precompute-reference | --evaluate WEIGHTS] CONFIG.cfg [section.key=value ...]\n"
            "       dpo_hpc --generate PROMPTS.jsonl --output OUT.jsonl [--tokenizer DIR]\n"
            "               [--eos ID[,ID...]] [--samples N] [--rollouts]\n"
            "               CONFIG.cfg [section.key=value ...]\n"
            "\n"
            "Trains a Llama-family model with DPO as CONFIG.cfg describes; each override\n"
            "replaces one key, in order (e.g. dpo.max_num_steps=100 policy.optimizer.lr=1e-5).\n"
            "  --evaluate WEIGHTS   no training: validation metrics of WEIGHTS (a checkpoint\n"
            "                       or HF folder) against the configuration's reference, on\n"
            "                       every validation split; one line each, <log_dir>/eval.jsonl\n"
            "  --precompute-reference  compute the reference model's log-probs for every split\n"
            "                          of data.dataset_path once and store them in that file;\n"
            "                          then train with dpo.precomputed_reference_logprobs=true\n"
            "  --generate IN        continue each prompt of IN ({\"prompt_ids\": [...]} or\n"
            "                       {\"prompt\": \"text\"} per line) with policy.model_name and\n"
            "                       the policy.generation keys; one JSON line per prompt to\n"
            "                       --output. --tokenizer DIR for text (default: the model's\n"
            "                       folder); --eos adds stop ids to the tokenizer's EOS;\n"
            "                       --samples N continuations per prompt; --rollouts writes\n"
            "                       NeMo Gym rollout records (add a reward, then dpo_pairs)\n"
            "  --list-devices       print the number of CUDA devices this process sees\n"
            "                       (0 without CUDA) and their names, then exit\n"
            "  --help, --version\n"
            "Keys and defaults: doc/config.md.\n");
}

// OpenMP threads per rank: the configured count, or the node's cores shared out.
static int threads_per_rank(const dpo_config_t *cfg, const dpo_mesh_t *mesh) {
    if (cfg->num_threads > 0) return cfg->num_threads;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int n = (int)(cores / mesh->local_size);
    return n > 0 ? n : 1;
}

// What a run reads and writes, by mode.
typedef struct {
    const char *config_path, *eval_weights;
    const gen_run_opts_t *gen;   // NULL unless --generate
    bool precompute;
} run_files_t;

// Every file the run reads; an input folder stands for its files (util.h).
static int run_inputs(const dpo_config_t *cfg, const run_files_t *rf, char *model_tok,
                      size_t model_tok_len, util_input_t *in) {
    snprintf(model_tok, model_tok_len, "%s.tokenizer", cfg->model_name);
    int n = 0;
    in[n++] = (util_input_t){"the configuration file", rf->config_path};
    in[n++] = (util_input_t){"data.dataset_path", rf->gen ? NULL : cfg->dataset_path};
    in[n++] = (util_input_t){"policy.model_name", cfg->model_name};
    in[n++] = (util_input_t){"policy.model_name's tokenizer folder",
                             cfg->model_name[0] ? model_tok : NULL};
    in[n++] = (util_input_t){"dpo.reference_model", cfg->reference_model};
    in[n++] = (util_input_t){"--evaluate", rf->eval_weights};
    in[n++] = (util_input_t){"--generate", rf->gen ? rf->gen->in_path : NULL};
    in[n++] = (util_input_t){"--tokenizer", rf->gen ? rf->gen->tokenizer_dir : NULL};
    return n;
}

// checkpointing.checkpoint_dir receives step_*.h5 files and prunes them: an input of
// that name directly in it could be overwritten or deleted.
static int check_checkpoint_dir(const dpo_config_t *cfg, const util_input_t *in, int n, char *err,
                                size_t err_len) {
    for (int i = 0; i < n; i++) {
        bool clash = in[i].path && util_dir_holds(cfg->checkpoint_dir, in[i].path, "step_");
        if (clash) {
            snprintf(err, err_len, "checkpointing.checkpoint_dir %s holds %s %s, a name this run's "
                     "checkpoints take (and prune); refusing to overwrite an input: copy it "
                     "elsewhere or choose another checkpoint_dir", cfg->checkpoint_dir, in[i].what,
                     in[i].path);
            return -1;
        }
    }
    return 0;
}

// The run's outputs must be none of its inputs (same device and inode: another
// spelling, a hard link, a symlink), checked before anything is read or written.
static int check_outputs(const dpo_config_t *cfg, const run_files_t *rf, char *err,
                         size_t err_len) {
    util_input_t in[16];
    char model_tok[DPO_PATH_MAX + 16];
    int n = run_inputs(cfg, rf, model_tok, sizeof model_tok, in);
    const char *log_files[] = {"config.cfg", "config.cfg.tmp", "metrics.jsonl", "metrics.jsonl.tmp"};
    char out[DPO_PATH_MAX + 64];
    if (rf->gen) {
        snprintf(out, sizeof out, "%s.tmp", rf->gen->out_path);
        if (util_check_output("--output", rf->gen->out_path, in, n, err, err_len) != 0 ||
            util_check_output("--output's temporary file", out, in, n, err, err_len) != 0)
            return -1;
    } else if (rf->precompute) {
        snprintf(out, sizeof out, "%s.tmp", cfg->dataset_path);
        in[1].path = NULL;  // the dataset is rewritten on purpose
        return util_check_output("the dataset's temporary copy", out, in, n, err, err_len);
    } else if (rf->eval_weights) {
        snprintf(out, sizeof out, "%s/eval.jsonl", cfg->log_dir);
        return util_check_output("logger.log_dir's", out, in, n, err, err_len);
    } else {
        for (size_t i = 0; i < sizeof log_files / sizeof log_files[0]; i++) {
            snprintf(out, sizeof out, "%s/%s", cfg->log_dir, log_files[i]);
            if (util_check_output("logger.log_dir's", out, in, n, err, err_len) != 0) return -1;
        }
        if (cfg->ckpt_enabled) return check_checkpoint_dir(cfg, in, n, err, err_len);
    }
    return 0;
}

static int list_devices(void) {
    char err[2048] = "";
    bool avail = backend_cuda_available(err, sizeof err);
    int n = avail ? backend_cuda_device_count() : 0;
    printf("CUDA devices: %d\n", n);
    if (!avail) printf("  (%s)\n", err);
    for (int d = 0; d < n; d++) {
        dpo_cuda_device_info_t info;
        if (backend_cuda_device_info(d, &info, err, sizeof err) == 0)
            printf("  %d: %s (PCI %04x:%02x:%02x, %.1f GiB)\n", d, info.name, info.pci_domain,
                   info.pci_bus, info.pci_device, (double)info.total_mem / (1 << 30));
        else
            printf("  %d: cannot be queried: %s\n", d, err);
    }
    return 0;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    dpo_program_set("dpo_hpc");
    int rank, world;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    comm_errors_init();

    bool precompute = false;
    const char *eval_weights = NULL;   // --evaluate WEIGHTS: validation only
    const char *gen_in = NULL, *gen_out = NULL, *gen_tok = NULL;
    int32_t eos[64];
    int n_eos = 0;
    int gen_samples = 1;
    bool gen_rollouts = false;
    int argi = 1;
    for (; argi < argc && argv[argi][0] == '-' && argv[argi][1] == '-'; argi++) {
        if (strcmp(argv[argi], "--evaluate") == 0 && argi + 1 < argc) {
            eval_weights = argv[++argi];
        } else if (strcmp(argv[argi], "--precompute-reference") == 0) {
            precompute = true;
        } else if (strcmp(argv[argi], "--rollouts") == 0) {
            gen_rollouts = true;
        } else if (strcmp(argv[argi], "--samples") == 0 && argi + 1 < argc) {
            char *end;
            long v = strtol(argv[++argi], &end, 10);
            if (end == argv[argi] || *end || v < 1 || v > 4096) {
                if (rank == 0) fprintf(stderr, "dpo_hpc: --samples expects 1..4096, got '%s'\n", argv[argi]);
                MPI_Finalize();
                return 2;
            }
            gen_samples = (int)v;
        } else if ((strcmp(argv[argi], "--generate") == 0 || strcmp(argv[argi], "--output") == 0 ||
                    strcmp(argv[argi], "--tokenizer") == 0 || strcmp(argv[argi], "--eos") == 0) &&
                   argi + 1 < argc) {
            const char *opt = argv[argi], *val = argv[++argi];
            if (strcmp(opt, "--generate") == 0) gen_in = val;
            else if (strcmp(opt, "--output") == 0) gen_out = val;
            else if (strcmp(opt, "--tokenizer") == 0) gen_tok = val;
            else {
                const char *p = val;
                while (*p) {
                    char *end;
                    long id = strtol(p, &end, 10);
                    if (end == p || id < 0 || id > INT32_MAX || n_eos == 64 ||
                        (*end != ',' && *end != '\0')) {
                        if (rank == 0) fprintf(stderr, "dpo_hpc: --eos: bad id list '%s'\n", val);
                        MPI_Finalize();
                        return 2;
                    }
                    eos[n_eos++] = (int32_t)id;
                    p = *end == ',' ? end + 1 : end;
                }
            }
        } else if (strcmp(argv[argi], "--list-devices") == 0) {
            int rc = rank == 0 ? list_devices() : 0;
            MPI_Finalize();
            return rc;
        } else if (strcmp(argv[argi], "--help") == 0) {
            if (rank == 0) usage(stdout);
            MPI_Finalize();
            return 0;
        } else if (dpo_version_option(argv[argi], rank == 0)) {
            MPI_Finalize();
            return 0;
        } else {
            if (rank == 0) {
                fprintf(stderr, "dpo_hpc: unknown option %s\n", argv[argi]);
                usage(stderr);
            }
            MPI_Finalize();
            return 2;
        }
    }
    if (eval_weights && (precompute || gen_in)) {
        if (rank == 0) {
            fprintf(stderr, "dpo_hpc: --evaluate cannot be combined with --generate or "
                            "--precompute-reference\n");
            usage(stderr);
        }
        MPI_Finalize();
        return 2;
    }
    if ((gen_in != NULL) != (gen_out != NULL) || (precompute && gen_in) ||
        (!gen_in && (gen_tok || n_eos || gen_rollouts || gen_samples != 1))) {
        if (rank == 0) {
            fprintf(stderr, "dpo_hpc: --generate needs --output (and --tokenizer / --eos / "
                            "--samples / --rollouts need --generate; not with "
                            "--precompute-reference)\n");
            usage(stderr);
        }
        MPI_Finalize();
        return 2;
    }
    if (argi >= argc) {
        if (rank == 0) usage(stderr);
        MPI_Finalize();
        return 2;
    }

    dpo_config_t cfg;
    config_load_bcast(&cfg, argv[argi], argc - argi - 1, argv + argi + 1);
    dpo_mesh_t mesh;
    mesh_init(&mesh, cfg.tensor_parallel_size);
    gen_run_opts_t gen_opts = {.in_path = gen_in, .out_path = gen_out, .tokenizer_dir = gen_tok,
                               .eos_ids = eos, .n_eos = n_eos, .samples = gen_samples,
                               .rollouts = gen_rollouts};
    run_files_t files = {.config_path = argv[argi], .eval_weights = eval_weights,
                         .gen = gen_in ? &gen_opts : NULL, .precompute = precompute};
    char err[2048] = "";
    bool files_ok = check_outputs(&cfg, &files, err, sizeof err) == 0;
    comm_agree_or_die(&mesh, files_ok, "outputs", err);
    int threads = threads_per_rank(&cfg, &mesh);
    backend_cpu_set_threads(threads);

    log_info("%s: %d rank(s) = %d tensor-parallel x %d data-parallel, backend %s", dpo_producer(),
             world, mesh.tp_size, mesh.dp_size, backend_kind_name(cfg.backend));
    // Device binding: one device per node-local rank (a GPU, or a share of the node's cores).
    bool cuda = cfg.backend == DPO_BACKEND_CUDA;
    char device[384] = "";
    dpo_matmul_precision_t prec = cfg.matmul_precision == DPO_CFG_MATMUL_FP32   ? DPO_MATMUL_FP32
                                  : cfg.matmul_precision == DPO_CFG_MATMUL_TF32 ? DPO_MATMUL_TF32
                                                                                : DPO_MATMUL_BF16;
    dpo_backend_t *cuda_be = cuda ? device_bind_cuda(&mesh, prec, device, sizeof device) : NULL;
    if (cuda) {
        size_t used = strlen(device);
        snprintf(device + used, sizeof device - used, ", matmul %s", cfg_matmul_name(cfg.matmul_precision));
    }
    const dpo_backend_t *be = cuda ? cuda_be : backend_cpu();
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    for (int r = 0; r < world; r++) {
        if (r == rank)
            printf("rank %d: host %s, node-local rank %d of %d, tp %d dp %d, %d OpenMP thread(s)%s\n",
                   rank, host, mesh.local_rank, mesh.local_size, mesh.tp_rank, mesh.dp_rank, threads,
                   device);
        fflush(stdout);
        MPI_Barrier(MPI_COMM_WORLD);
    }
    if (rank == 0) {
        printf("effective configuration:\n");
        config_write_cfg(&cfg, stdout);
        fflush(stdout);
    }

    // DPO_PROFILE_OPS=1: time every op of the backend (benchmarks/README.md).
    dpo_backend_t *prof = backend_profile_enabled() ? backend_profile_wrap(be) : NULL;
    const dpo_backend_t *run_be = prof ? prof : be;
    int rc = gen_in ? generate_main(&cfg, &mesh, run_be, &gen_opts)
             : precompute ? trainer_precompute_reference(&cfg, &mesh, run_be)
             : eval_weights ? trainer_evaluate(&cfg, &mesh, run_be, eval_weights)
                          : trainer_train(&cfg, &mesh, run_be);
    if (prof && rank == 0) backend_profile_report(prof, stdout);
    backend_profile_free(prof);
    mesh_free(&mesh);  // NCCL communicators first: they still use the backend's stream
    backend_cuda_close(cuda_be);
    MPI_Finalize();
    return rc;
}
