// dpo_hpc — Direct Preference Optimization of Llama-family models, one rank per
// device:  mpirun -np N dpo_hpc input.cfg [section.key=value ...]
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dpo/backend.h"
#include "dpo/config.h"
#include "dpo/error.h"
#include "dpo/generate.h"
#include "dpo/mesh.h"
#include "dpo/trainer.h"

#define DPO_VERSION "0.1.0"

static void usage(FILE *f) {
    fprintf(f,
            "usage: dpo_hpc [--precompute-reference] CONFIG.cfg [section.key=value ...]\n"
            "       dpo_hpc --generate PROMPTS.jsonl --output OUT.jsonl [--tokenizer DIR]\n"
            "               [--eos ID[,ID...]] [--samples N] [--rollouts]\n"
            "               CONFIG.cfg [section.key=value ...]\n"
            "\n"
            "Trains a Llama-family model with DPO as CONFIG.cfg describes; each override\n"
            "replaces one key, in order (e.g. dpo.max_num_steps=100 policy.optimizer.lr=1e-5).\n"
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

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, world;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    log_set_rank(rank, world);

    bool precompute = false;
    const char *gen_in = NULL, *gen_out = NULL, *gen_tok = NULL;
    int32_t eos[64];
    int n_eos = 0;
    int gen_samples = 1;
    bool gen_rollouts = false;
    int argi = 1;
    for (; argi < argc && argv[argi][0] == '-' && argv[argi][1] == '-'; argi++) {
        if (strcmp(argv[argi], "--precompute-reference") == 0) {
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
        } else if (strcmp(argv[argi], "--help") == 0) {
            if (rank == 0) usage(stdout);
            MPI_Finalize();
            return 0;
        } else if (strcmp(argv[argi], "--version") == 0) {
            if (rank == 0) printf("dpo_hpc %s\n", DPO_VERSION);
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
    int threads = threads_per_rank(&cfg, &mesh);
    backend_cpu_set_threads(threads);

    log_info("dpo_hpc %s: %d rank(s) = %d tensor-parallel x %d data-parallel, backend %s", DPO_VERSION,
             world, mesh.tp_size, mesh.dp_size, cfg.backend);
    // Device binding: one device (here: a share of the node's cores) per node-local rank.
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    for (int r = 0; r < world; r++) {
        if (r == rank)
            printf("rank %d: host %s, node-local rank %d of %d, tp %d dp %d, %d OpenMP thread(s)\n",
                   rank, host, mesh.local_rank, mesh.local_size, mesh.tp_rank, mesh.dp_rank, threads);
        fflush(stdout);
        MPI_Barrier(MPI_COMM_WORLD);
    }
    if (rank == 0) {
        printf("effective configuration:\n");
        config_write_cfg(&cfg, stdout);
        fflush(stdout);
    }

    gen_run_opts_t gen_opts = {.in_path = gen_in, .out_path = gen_out, .tokenizer_dir = gen_tok,
                               .eos_ids = eos, .n_eos = n_eos, .samples = gen_samples,
                               .rollouts = gen_rollouts};
    int rc = gen_in ? generate_main(&cfg, &mesh, &gen_opts)
             : precompute ? trainer_precompute_reference(&cfg, &mesh)
                          : trainer_train(&cfg, &mesh);
    mesh_free(&mesh);
    MPI_Finalize();
    return rc;
}
