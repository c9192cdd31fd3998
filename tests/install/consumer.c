// A program of another project, built against an installed dpo_hpc (tests/install.sh):
// names itself, writes a one-pair dataset with the library and reads it back.
#include <stdio.h>
#include <string.h>

#include <mpi.h>

#include "dpo/dataset.h"
#include "dpo/program.h"
#include "dpo/version.h"

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    MPI_Init(&argc, &argv);
    dpo_program_set("consumer");
    printf("%s (header %s)\n", dpo_producer(), DPO_VERSION_STRING);
    char err[512];
    dataset_meta_t meta = {.vocab_size = 16, .tokenizer = "test", .provenance = "install test"};
    dataset_writer_t *w = dataset_writer_create(argv[1], &meta, err, sizeof err);
    const int32_t c[4] = {1, 2, 3, 4}, r[4] = {1, 2, 5, 6};
    int rc = !w || dataset_writer_begin_split(w, "train") != 0 ||
             dataset_writer_add_pair(w, c, 4, 2, r, 4, 2) != 0 ||
             dataset_writer_commit(w, err, sizeof err) != 0;
    dpo_dataset_t ds;
    if (!rc) rc = dataset_open(&ds, argv[1], MPI_COMM_WORLD, err, sizeof err) != 0;
    if (!rc) {
        rc = ds.train.n_pairs != 1;
        dataset_close(&ds);
    }
    if (rc) fprintf(stderr, "consumer: %s\n", err);
    MPI_Finalize();
    return rc;
}
