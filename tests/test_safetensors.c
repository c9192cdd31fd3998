// test_safetensors.c — the safetensors reader and writer (src/hf/safetensors.c):
// F32 and BF16 write/read round trips (whole tensors and slabs), BF16 rounding on
// known values (ties to even, overflow, NaN), F16 decoding of hand-made files, the
// metadata, and corrupt files — each refused with a message naming the file and,
// where there is one, the tensor.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dpo/safetensors.h"
#include "testutil.h"

static uint32_t bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}
static float from_bits(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

// Writes a file by hand: header length (hlen_override when non-zero), header, data.
static void write_raw(const char *path, const char *header, const void *data, size_t n,
                      uint64_t hlen_override) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    uint64_t h = hlen_override ? hlen_override : strlen(header);
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(h >> (8 * i));
    fwrite(b, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

static void test_bf16_rounding(void) {
    struct {
        uint32_t in;
        uint16_t out;
    } v[] = {
        {0x3F800000u, 0x3F80},  // 1.0
        {0x3F808000u, 0x3F80},  // 1 + 2^-8: tie, kept bit even -> down
        {0x3F818000u, 0x3F82},  // 1 + 3 * 2^-8: tie, kept bit odd -> up
        {0x3F808001u, 0x3F81},  // just above the tie -> up
        {0x3F807FFFu, 0x3F80},  // just below the tie -> down
        {0x40490FDBu, 0x4049},  // pi
        {0xC0490FDBu, 0xC049},  // -pi
        {0x7F7FFFFFu, 0x7F80},  // FLT_MAX rounds to +inf
        {0x7F800000u, 0x7F80},  // +inf
        {0xFF800000u, 0xFF80},  // -inf
        {0x80000000u, 0x8000},  // -0
        {0x00000001u, 0x0000},  // smallest subnormal -> +0
        {0x007F8000u, 0x0080},  // tie in the subnormals: kept bit odd -> up, to FLT_MIN
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        uint16_t got = st_f32_to_bf16(from_bits(v[i].in));
        if (got != v[i].out)
            test_fail(__FILE__, __LINE__, "bf16(0x%08x) = 0x%04x, want 0x%04x", v[i].in, got, v[i].out);
    }
    // NaNs stay NaN, also those whose payload lies only in the dropped bits.
    CHECK(isnan(st_bf16_to_f32(st_f32_to_bf16(from_bits(0x7F800001u)))));
    CHECK(isnan(st_bf16_to_f32(st_f32_to_bf16(from_bits(0xFFC00000u)))));
    CHECK(bits(st_bf16_to_f32(0x3F82)) == 0x3F820000u);
}

static void test_f16(const char *dir) {
    const uint16_t h[] = {0x3C00, 0xC000, 0x3555, 0x0001, 0x03FF, 0x0400, 0x7BFF, 0x7C00,
                          0xFC00, 0x8000};
    const float want[] = {1.0f, -2.0f, 0.333251953125f, 0x1p-24f, 1023 * 0x1p-24f, 0x1p-14f,
                          65504.0f, INFINITY, -INFINITY, -0.0f};
    char path[512];
    snprintf(path, sizeof path, "%s/f16.safetensors", dir);
    unsigned char data[20];
    for (int i = 0; i < 10; i++) {
        data[2 * i] = (unsigned char)h[i];
        data[2 * i + 1] = (unsigned char)(h[i] >> 8);
    }
    write_raw(path,
              "{\"__metadata__\":{\"format\":\"pt\"},\"x\":{\"dtype\":\"F16\",\"shape\":[2,5],"
              "\"data_offsets\":[0,20]}}",
              data, sizeof data, 0);
    st_file_t f;
    char err[1024];
    if (st_open(&f, path, err, sizeof err) != 0) {
        test_fail(__FILE__, __LINE__, "F16 file refused: %s", err);
        return;
    }
    CHECK(f.n_tensors == 1 && f.tensors[0].dtype == ST_F16 && f.tensors[0].shape[1] == 5);
    CHECK(st_meta(&f, "format") && strcmp(st_meta(&f, "format"), "pt") == 0);
    float out[10];
    CHECK(st_read_slab(&f, 0, 0, 2, 0, 5, out, err, sizeof err) == 0);
    for (int i = 0; i < 10; i++)
        if (bits(out[i]) != bits(want[i]))
            test_fail(__FILE__, __LINE__, "f16 0x%04x -> %.9g, want %.9g", h[i], (double)out[i],
                      (double)want[i]);
    float col[2];  // slab: column 3 of both rows
    CHECK(st_read_slab(&f, 0, 0, 2, 3, 1, col, err, sizeof err) == 0);
    CHECK(bits(col[0]) == bits(want[3]) && bits(col[1]) == bits(want[8]));
    CHECK(st_read_slab(&f, 0, 1, 2, 0, 5, out, err, sizeof err) != 0);  // past the end
    st_close(&f);
}

static void test_round_trip(const char *dir, st_dtype_t dt) {
    enum { R = 7, C = 9, V = 11 };
    float a[R * C], b[V];
    test_fill_uniform(a, R * C, 3, -4.0f, 4.0f);
    test_fill_uniform(b, V, 4, -1.0f, 1.0f);
    a[0] = -0.0f;
    a[1] = INFINITY;
    a[2] = 1e-41f;  // subnormal
    a[3] = from_bits(0x3F818000u);
    st_out_tensor_t t[2] = {{.name = "model.w", .ndim = 2, .shape = {R, C}, .data = a},
                            {.name = "model.b", .ndim = 1, .shape = {V}, .data = b}};
    char path[512], err[1024];
    snprintf(path, sizeof path, "%s/rt_%s.safetensors", dir, st_dtype_name(dt));
    const char *mk[] = {"format", "note"}, *mv[] = {"pt", "round trip"};
    CHECK(st_write(path, t, 2, dt, mk, mv, 2, err, sizeof err) == 0);
    FILE *fp = fopen(path, "rb");
    unsigned char lb[8] = {0};
    CHECK(fp && fread(lb, 1, 8, fp) == 8);
    if (fp) fclose(fp);
    CHECK(lb[0] % 8 == 0);  // data section aligned to 8 bytes
    st_file_t f;
    if (st_open(&f, path, err, sizeof err) != 0) {
        test_fail(__FILE__, __LINE__, "%s", err);
        return;
    }
    CHECK(f.n_tensors == 2 && f.n_meta == 2);
    CHECK(st_meta(&f, "note") && strcmp(st_meta(&f, "note"), "round trip") == 0);
    int iw = st_find(&f, "model.w"), ib = st_find(&f, "model.b");
    CHECK(iw >= 0 && ib >= 0 && st_find(&f, "nope") < 0);
    if (iw < 0 || ib < 0) {
        st_close(&f);
        return;
    }
    CHECK(f.tensors[iw].dtype == dt && f.tensors[iw].ndim == 2 && f.tensors[ib].ndim == 1);
    float ra[R * C], rb[V];
    CHECK(st_read_slab(&f, iw, 0, R, 0, C, ra, err, sizeof err) == 0);
    CHECK(st_read_slab(&f, ib, 0, V, 0, 1, rb, err, sizeof err) == 0);
    int bad = 0;
    for (int i = 0; i < R * C; i++) {
        float w = dt == ST_F32 ? a[i] : st_bf16_to_f32(st_f32_to_bf16(a[i]));
        bad += bits(w) != bits(ra[i]);
    }
    for (int i = 0; i < V; i++) {
        float w = dt == ST_F32 ? b[i] : st_bf16_to_f32(st_f32_to_bf16(b[i]));
        bad += bits(w) != bits(rb[i]);
    }
    if (bad) test_fail(__FILE__, __LINE__, "%s round trip: %d values differ", st_dtype_name(dt), bad);
    // A slab: rows 2..5, columns 3..7.
    float s[4 * 5];
    CHECK(st_read_slab(&f, iw, 2, 4, 3, 5, s, err, sizeof err) == 0);
    bad = 0;
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 5; c++) bad += bits(s[r * 5 + c]) != bits(ra[(2 + r) * C + 3 + c]);
    if (bad) test_fail(__FILE__, __LINE__, "%s slab: %d values differ", st_dtype_name(dt), bad);
    if (dt == ST_BF16) CHECK(bits(ra[3]) == 0x3F820000u);
    st_close(&f);
}

// A corrupt file must be refused with a message holding the path and `want`.
static void expect_refused(const char *dir, const char *name, const char *header, size_t n_data,
                           uint64_t hlen, const char *want) {
    char path[512], err[1024] = "";
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, name);
    unsigned char data[256] = {0};
    write_raw(path, header, data, n_data, hlen);
    st_file_t f;
    if (st_open(&f, path, err, sizeof err) == 0) {
        test_fail(__FILE__, __LINE__, "%s: accepted", name);
        st_close(&f);
        return;
    }
    if (!strstr(err, path) || !strstr(err, want))
        test_fail(__FILE__, __LINE__, "%s: message \"%s\" lacks the path or \"%s\"", name, err, want);
}

static void test_corrupt(const char *dir) {
    char path[512], err[1024];
    // Truncated: not even the length.
    snprintf(path, sizeof path, "%s/short.safetensors", dir);
    FILE *fp = fopen(path, "wb");
    fwrite("\x10\0\0", 1, 3, fp);
    fclose(fp);
    st_file_t f;
    CHECK(st_open(&f, path, err, sizeof err) != 0 && strstr(err, "truncated") && strstr(err, path));
    CHECK(st_open(&f, "/nonexistent/x.safetensors", err, sizeof err) != 0 &&
          strstr(err, "/nonexistent/x.safetensors"));
    const char *ok = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}";
    expect_refused(dir, "truncated_data", ok, 8, 0, "\"w\"");  // 8 of 16 data bytes
    expect_refused(dir, "hlen_big", ok, 16, 1000000, "header length");
    expect_refused(dir, "hlen_huge", ok, 16, (uint64_t)1 << 62, "header length");
    expect_refused(dir, "bad_json", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],", 16, 0,
                   "not valid JSON");
    expect_refused(dir, "not_object", "[1, 2, 3]", 0, 0, "'{'");
    expect_refused(dir, "dup_key",
                   "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                   "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                   8, 0, "not valid JSON");
    expect_refused(dir, "out_of_range",
                   "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,32]}}", 16, 0,
                   "tensor \"w\": data_offsets [0, 32] out of range");
    expect_refused(dir, "reversed",
                   "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 16, 0,
                   "tensor \"w\"");
    expect_refused(dir, "overlap",
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                   "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                   12, 0, "overlap");
    expect_refused(dir, "hole",
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                   "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                   12, 0, "hole");
    expect_refused(dir, "trailing", ok, 20, 0, "trailing");
    expect_refused(dir, "shape_mismatch",
                   "{\"w\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16, 0,
                   "tensor \"w\": data_offsets span 16 bytes but dtype BF16");
    expect_refused(dir, "dtype", "{\"w\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]}}",
                   16, 0, "tensor \"w\": dtype F64 is not supported");
    expect_refused(dir, "bad_shape",
                   "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, 0,
                   "tensor \"w\": shape[0]");
    expect_refused(dir, "no_offsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, 0,
                   "tensor \"w\"");
    expect_refused(dir, "bad_meta", "{\"__metadata__\":{\"k\":1}}", 0, 0, "__metadata__");
}

int main(void) {
    char dir[] = "/tmp/test_safetensors.XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_bf16_rounding();
    test_f16(dir);
    test_round_trip(dir, ST_F32);
    test_round_trip(dir, ST_BF16);
    test_corrupt(dir);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return test_finish("test_safetensors");
}
