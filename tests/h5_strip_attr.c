// h5_strip_attr FILE NAME... — deletes root attributes of an HDF5 file (tests make
// files as older builds wrote them, e.g. without `producer`). Exit 1 when one is absent.
#include <hdf5.h>
#include <stdio.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: h5_strip_attr FILE NAME...\n");
        return 2;
    }
    hid_t f = H5Fopen(argv[1], H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0) return 1;
    int rc = 0;
    for (int i = 2; i < argc; i++)
        if (H5Adelete(f, argv[i]) < 0) {
            fprintf(stderr, "h5_strip_attr: %s: no root attribute %s\n", argv[1], argv[i]);
            rc = 1;
        }
    return H5Fclose(f) < 0 ? 1 : rc;
}
