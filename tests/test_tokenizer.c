// test_tokenizer.c — the tokenizer against the Python tokenizers package.
//
//   test_tokenizer          tiny fixture tokenizers (tests/data/tokenizer/tiny_*), SHA-256
//                           vectors, accessors, load and decode errors
//   test_tokenizer --real   the real tokenizers of ../shared/testdata/tokenizers (or
//                           $DPO_TESTDATA); exits 77 (skip) when none is there
//
// Conformance: every line of tests/data/tokenizer/corpus.jsonl is encoded and compared
// id for id with expected_<name>.jsonl (written by tests/fixtures/gen_tokenizer_ids.py
// from tokenizers' encode(text, add_special_tokens=False)); the expected ids are
// decoded and compared with tokenizers' decode(ids, skip_special_tokens=False). Each
// tokenizer runs twice: with the default merge strategy, and with the heap merge
// forced on every word, so both merge paths are checked.
#define _POSIX_C_SOURCE 200809L
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dpo/sha256.h"
#include "dpo/tokenizer.h"
#include "testutil.h"
#include "tok_internal.h"  // bpe_heap_min, to force the heap merge

#ifndef DPO_SOURCE_DIR
#define DPO_SOURCE_DIR "."
#endif
#define DATA DPO_SOURCE_DIR "/tests/data/tokenizer"

typedef struct {
    char *s;
    size_t n;
} text_t;

static text_t *corpus;
static size_t n_corpus;

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

// All records of a JSONL file (texts may hold \u0000, which jsonl.h refuses).
static json_t **read_jsonl(const char *path, size_t *n) {
    FILE *f = fopen(path, "r");
    if (!f) {
        test_fail(__FILE__, __LINE__, "cannot open %s", path);
        *n = 0;
        return NULL;
    }
    json_t **v = NULL;
    char *line = NULL;
    size_t cap = 0, lcap = 0;
    *n = 0;
    while (getline(&line, &lcap, f) > 0) {
        json_error_t je;
        json_t *rec = json_loads(line, JSON_ALLOW_NUL, &je);
        if (!rec) {
            test_fail(__FILE__, __LINE__, "%s:%zu: %s", path, *n + 1, je.text);
            break;
        }
        if (*n == cap) v = realloc(v, (cap = cap ? 2 * cap : 256) * sizeof *v);
        v[(*n)++] = rec;
    }
    free(line);
    fclose(f);
    return v;
}

static void free_jsonl(json_t **v, size_t n) {
    for (size_t i = 0; i < n; i++) json_decref(v[i]);
    free(v);
}

static void load_corpus(void) {
    size_t nrec, cap = 0;
    json_t **recs = read_jsonl(DATA "/corpus.jsonl", &nrec);
    for (size_t ri = 0; ri < nrec; ri++) {
        json_t *rec = recs[ri];
        if (n_corpus == cap) corpus = realloc(corpus, (cap = cap ? 2 * cap : 256) * sizeof *corpus);
        text_t *t = &corpus[n_corpus++];
        json_t *txt = json_object_get(rec, "text"), *hex = json_object_get(rec, "hex");
        if (json_is_string(txt)) {
            t->n = json_string_length(txt);
            t->s = malloc(t->n + 1);
            memcpy(t->s, json_string_value(txt), t->n + 1);
        } else {
            const char *h = json_string_value(hex);
            t->n = strlen(h) / 2;
            t->s = malloc(t->n + 1);
            for (size_t i = 0; i < t->n; i++) t->s[i] = (char)(hexval(h[2 * i]) * 16 + hexval(h[2 * i + 1]));
            t->s[t->n] = 0;
        }
    }
    free_jsonl(recs, nrec);
    CHECK(n_corpus > 150);
}

static void print_ids(const char *what, const int32_t *ids, size_t n) {
    fprintf(stderr, "  %s (%zu):", what, n);
    for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, n > 40 ? " ...\n" : "\n");
}

// Encodes the corpus with the tokenizer in `dir` and compares with expected_<name>.jsonl.
static void conformance(const char *dir, const char *name, bool force_heap) {
    char err[1024], path[1024];
    dpo_tokenizer_t *t = tokenizer_load(dir, err, sizeof err);
    if (!t) {
        test_fail(__FILE__, __LINE__, "%s", err);
        return;
    }
    if (force_heap) t->bpe_heap_min = 2;
    snprintf(path, sizeof path, DATA "/expected_%s.jsonl", name);
    size_t nrec;
    json_t **recs = read_jsonl(path, &nrec);
    tok_ids_t ids = {0};
    size_t line = 0, bad = 0;
    for (size_t ri = 0; ri < nrec && line < n_corpus; ri++) {
        json_t *rec = recs[ri];
        const text_t *tx = &corpus[line++];
        json_t *exp = json_object_get(rec, "ids");
        size_t ne = json_array_size(exp), n_invalid = 99;
        int32_t *e = malloc((ne + 1) * sizeof *e);
        for (size_t i = 0; i < ne; i++) e[i] = (int32_t)json_integer_value(json_array_get(exp, i));
        // Encode appends: start from a non-empty buffer to check that too.
        tok_ids_clear(&ids);
        tok_ids_push(&ids, -7);
        int rc = tokenizer_encode(t, tx->s, tx->n, &ids, &n_invalid, err, sizeof err);
        bool same = rc == 0 && ids.len == ne + 1 && ids.ids[0] == -7 &&
                    memcmp(ids.ids + 1, e, ne * sizeof *e) == 0;
        if (!same) {
            if (bad++ < 8) {
                test_fail(__FILE__, __LINE__, "%s%s: corpus line %zu (%.60s): ids differ%s%s", name,
                          force_heap ? " (heap merge)" : "", line, tx->s, rc ? ": " : "",
                          rc ? err : "");
                print_ids("expected", e, ne);
                if (ids.len) print_ids("ours", ids.ids + 1, ids.len - 1);
            }
        }
        if (n_invalid != (size_t)json_integer_value(json_object_get(rec, "n_invalid")))
            test_fail(__FILE__, __LINE__, "%s: line %zu: n_invalid %zu", name, line, n_invalid);
        if (!force_heap) {
            size_t dl = 0;
            char *dec = tokenizer_decode(t, e, ne, &dl, err, sizeof err);
            json_t *want = json_object_get(rec, "decoded");
            if (!dec || dl != json_string_length(want) || memcmp(dec, json_string_value(want), dl) != 0)
                test_fail(__FILE__, __LINE__, "%s: line %zu: decode gives \"%s\", want \"%s\"", name,
                          line, dec ? dec : err, json_string_value(want));
            free(dec);
        }
        free(e);
    }
    free_jsonl(recs, nrec);
    CHECK(line == n_corpus);
    if (bad) fprintf(stderr, "%s: %zu of %zu lines differ\n", name, bad, line);
    printf("%-16s %s %zu corpus lines, %zu differ\n", name, force_heap ? "(heap merge)" : "            ",
           line, bad);
    tok_ids_free(&ids);
    tokenizer_free(t);
}

// ---------------------------------------------------------------- SHA-256

static void test_sha256(void) {
    char hex[65];
    sha256_hex("", 0, hex);
    CHECK(strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0);
    sha256_hex("abc", 3, hex);
    CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
    const char *m2 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha256_hex(m2, strlen(m2), hex);
    CHECK(strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1") == 0);
    const char *m3 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopq"
                     "klmnopqrlmnopqrsmnopqrstnopqrstu";
    sha256_hex(m3, strlen(m3), hex);
    CHECK(strcmp(hex, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1") == 0);
    // One million 'a' fed in uneven pieces (exercises the partial-block path).
    static char a[1000];
    memset(a, 'a', sizeof a);
    sha256_ctx_t c;
    sha256_init(&c);
    size_t done = 0, step = 1;
    while (done < 1000000) {
        size_t k = step < 1000000 - done ? step : 1000000 - done;
        if (k > sizeof a) k = sizeof a;
        sha256_update(&c, a, k);
        done += k;
        step = step * 7 % 997 + 1;
    }
    uint8_t d[32];
    sha256_final(&c, d);
    static const uint8_t want[32] = {0xcd, 0xc7, 0x6e, 0x5c, 0x99, 0x14, 0xfb, 0x92, 0x81, 0xa1, 0xc7,
                                     0xe2, 0x84, 0xd7, 0x3e, 0x67, 0xf1, 0x80, 0x9a, 0x48, 0xa4, 0x97,
                                     0x20, 0x0e, 0x04, 0x6d, 0x39, 0xcc, 0xc7, 0x11, 0x2c, 0xd0};
    CHECK(memcmp(d, want, 32) == 0);
    // 55, 56 and 64 bytes: the padding boundary cases.
    static const struct {
        size_t n;
        const char *hex;
    } pad[] = {{55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
               {56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
               {64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"}};
    for (size_t i = 0; i < 3; i++) {
        sha256_hex(a, pad[i].n, hex);
        if (strcmp(hex, pad[i].hex) != 0)
            test_fail(__FILE__, __LINE__, "sha256 of %zu 'a': %s", pad[i].n, hex);
    }
}

// ---------------------------------------------------------------- accessors

// Vocabulary size and an added token's id straight from the tokenizer.json.
static void json_facts(const char *dir, int *vocab, int32_t *first_added, char **first_content) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    json_t *j = json_load_file(path, 0, NULL);
    int64_t max = -1;
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(json_object_get(j, "model"), "vocab"), k, v) {
        if (json_integer_value(v) > max) max = json_integer_value(v);
    }
    json_t *added = json_object_get(j, "added_tokens"), *a = json_array_get(added, 1);
    size_t i;
    json_array_foreach(added, i, v) {
        if (json_integer_value(json_object_get(v, "id")) > max) max = json_integer_value(json_object_get(v, "id"));
    }
    *vocab = (int)max + 1;
    *first_added = (int32_t)json_integer_value(json_object_get(a, "id"));
    *first_content = strdup(json_string_value(json_object_get(a, "content")));
    json_decref(j);
}

static void test_accessors_tiny(void) {
    char err[512];
    int vocab;
    int32_t id;
    char *content;
    json_facts(DATA "/tiny_bytelevel", &vocab, &id, &content);
    dpo_tokenizer_t *t = tokenizer_load(DATA "/tiny_bytelevel", err, sizeof err);
    if (!t) {
        test_fail(__FILE__, __LINE__, "%s", err);
        return;
    }
    CHECK(tokenizer_vocab_size(t) == vocab);
    CHECK(strcmp(content, "<|im_start|>") == 0);
    CHECK(tokenizer_token_to_id(t, "<|im_start|>") == id);
    CHECK(tokenizer_id_to_token(t, id) && strcmp(tokenizer_id_to_token(t, id), "<|im_start|>") == 0);
    CHECK(tokenizer_token_to_id(t, "qqqq") >= 0);
    CHECK(tokenizer_token_to_id(t, "no such token") == -1);
    CHECK(tokenizer_id_to_token(t, -1) == NULL);
    CHECK(tokenizer_id_to_token(t, vocab) == NULL);
    CHECK(tokenizer_bos_token(t) == NULL);
    CHECK(tokenizer_eos_token(t) && strcmp(tokenizer_eos_token(t), "<|im_end|>") == 0);
    CHECK(!tokenizer_add_bos_token(t));
    CHECK(tokenizer_chat_template(t) && strstr(tokenizer_chat_template(t), "<|im_start|>"));
    CHECK(tokenizer_class(t) && strcmp(tokenizer_class(t), "Qwen2Tokenizer") == 0);
    CHECK(strncmp(tokenizer_identity(t), "bpe:", 4) == 0 && strlen(tokenizer_identity(t)) == 68);
    // An id outside the vocabulary is an error for decode.
    int32_t badid[2] = {5, vocab + 3};
    char *dec = tokenizer_decode(t, badid, 2, NULL, err, sizeof err);
    CHECK(dec == NULL && strstr(err, "not in the vocabulary"));
    // Empty input, empty output.
    tok_ids_t ids = {0};
    size_t n_invalid = 7;
    CHECK(tokenizer_encode(t, NULL, 0, &ids, &n_invalid, err, sizeof err) == 0);
    CHECK(ids.len == 0 && n_invalid == 0);
    dec = tokenizer_decode(t, NULL, 0, NULL, err, sizeof err);
    CHECK(dec && dec[0] == '\0');
    free(dec);
    tok_ids_free(&ids);
    tokenizer_free(t);
    free(content);

    json_facts(DATA "/tiny_sp", &vocab, &id, &content);
    t = tokenizer_load(DATA "/tiny_sp", err, sizeof err);
    if (!t) {
        test_fail(__FILE__, __LINE__, "%s", err);
        return;
    }
    CHECK(tokenizer_vocab_size(t) == vocab);
    CHECK(tokenizer_token_to_id(t, "<s>") == 1 && id == 1);
    CHECK(tokenizer_token_to_id(t, "<0x41>") >= 3);
    CHECK(tokenizer_bos_token(t) && strcmp(tokenizer_bos_token(t), "<s>") == 0);  // {"content":..}
    CHECK(tokenizer_eos_token(t) && strcmp(tokenizer_eos_token(t), "</s>") == 0);
    CHECK(tokenizer_add_bos_token(t));
    CHECK(tokenizer_class(t) && strcmp(tokenizer_class(t), "LlamaTokenizer") == 0);
    tokenizer_free(t);
    free(content);
}

// ---------------------------------------------------------------- load errors

static char tmpdir[512];

static void write_file(const char *name, const char *text) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

#define BASE_MODEL "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\"]}"

// Loads tokenizer.json = `json` and expects failure with a message containing `want`.
static void expect_load_error(const char *json, const char *want, int line) {
    char err[1024] = "";
    write_file("tokenizer.json", json);
    dpo_tokenizer_t *t = tokenizer_load(tmpdir, err, sizeof err);
    if (t) {
        test_fail(__FILE__, line, "loaded although it should not: %s", json);
        tokenizer_free(t);
    } else if (!strstr(err, want) || !strstr(err, "tokenizer.json")) {
        test_fail(__FILE__, line, "message \"%s\" lacks \"%s\" or the file name", err, want);
    }
}

static void test_load_errors(void) {
    snprintf(tmpdir, sizeof tmpdir, "test_tokenizer_tmp_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        test_fail(__FILE__, __LINE__, "mkdtemp");
        return;
    }
    char err[1024];
    // A minimal valid tokenizer: no unk token, so unknown characters are dropped.
    write_file("tokenizer.json", "{\"version\": \"1.0\", " BASE_MODEL "}");
    dpo_tokenizer_t *t = tokenizer_load(tmpdir, err, sizeof err);
    CHECK(t != NULL);
    if (t) {
        tok_ids_t ids = {0};
        CHECK(tokenizer_encode(t, "abcab", 5, &ids, NULL, err, sizeof err) == 0);
        CHECK(ids.len == 2 && ids.ids[0] == 2 && ids.ids[1] == 2);
        char *dec = tokenizer_decode(t, ids.ids, ids.len, NULL, err, sizeof err);
        CHECK(dec && strcmp(dec, "ab ab") == 0);  // no decoder: joined with spaces
        free(dec);
        CHECK(tokenizer_chat_template(t) == NULL && tokenizer_bos_token(t) == NULL);
        tok_ids_free(&ids);
        tokenizer_free(t);
    }
    expect_load_error("{\"version\": \"1.0\", \"model\": {", "invalid JSON", __LINE__);
    expect_load_error("[1, 2]", "invalid JSON", __LINE__);
    expect_load_error("{\"version\": \"2.0\", " BASE_MODEL "}", "version", __LINE__);
    expect_load_error("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}",
                      "unsupported model type 'WordPiece'", __LINE__);
    expect_load_error("{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", 0.0]]}}",
                      "unsupported model type 'Unigram'", __LINE__);
    expect_load_error("{\"normalizer\": {\"type\": \"Lowercase\"}, " BASE_MODEL "}",
                      "unsupported normalizer 'Lowercase'", __LINE__);
    expect_load_error("{\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFC\"}, "
                      "{\"type\": \"NFKC\"}]}, " BASE_MODEL "}",
                      "unsupported normalizer 'NFKC'", __LINE__);
    expect_load_error("{\"pre_tokenizer\": {\"type\": \"Whitespace\"}, " BASE_MODEL "}",
                      "unsupported pre_tokenizer 'Whitespace'", __LINE__);
    expect_load_error("{\"decoder\": {\"type\": \"WordPiece\", \"prefix\": \"##\"}, " BASE_MODEL "}",
                      "unsupported decoder 'WordPiece'", __LINE__);
    expect_load_error("{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\w+\"}, "
                      "\"behavior\": \"Isolated\", \"invert\": false}, " BASE_MODEL "}",
                      "not supported", __LINE__);
    expect_load_error("{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(a\"}, "
                      "\"behavior\": \"Isolated\", \"invert\": false}, " BASE_MODEL "}",
                      "does not compile", __LINE__);
    expect_load_error("{\"normalizer\": {\"type\": \"Replace\", \"pattern\": {\"Regex\": \"a*\"}, "
                      "\"content\": \"-\"}, " BASE_MODEL "}",
                      "can match the empty string", __LINE__);
    expect_load_error("{\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": ["
                      "{\"type\": \"ByteLevel\"}, {\"type\": \"Split\", \"pattern\": {\"String\": \" \"},"
                      " \"behavior\": \"Isolated\", \"invert\": false}]}, " BASE_MODEL "}",
                      "ByteLevel must be the last", __LINE__);
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}}",
                      "\"ab\" is not in the vocabulary", __LINE__);
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a c\"]}}",
                      "not in the vocabulary", __LINE__);
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"dropout\": 0.1, \"vocab\": {\"a\": 0}, \"merges\": []}}",
                      "dropout", __LINE__);
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a b c\"]}}",
                      "two tokens", __LINE__);
    expect_load_error("{\"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"_\", "
                      "\"add_prefix_space\": false}, " BASE_MODEL "}",
                      "add_prefix_space does not match", __LINE__);
    // tokenizer_config.json is optional, but must be valid when present.
    write_file("tokenizer.json", "{" BASE_MODEL "}");
    write_file("tokenizer_config.json", "{\"bos_token\": ");
    t = tokenizer_load(tmpdir, err, sizeof err);
    CHECK(t == NULL && strstr(err, "tokenizer_config.json: invalid JSON"));
    tokenizer_free(t);
    t = tokenizer_load("no/such/dir", err, sizeof err);
    CHECK(t == NULL && strstr(err, "no/such/dir/tokenizer.json: cannot open"));

    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizer.json", tmpdir);
    remove(path);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", tmpdir);
    remove(path);
    rmdir(tmpdir);
}

// ---------------------------------------------------------------- real tokenizers

static const struct {
    const char *name, *sha256, *special;
    int vocab;
    int32_t special_id;
    const char *bos, *eos;
    bool add_bos, has_template;
} REAL[] = {
    {"qwen3", "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4", "<|im_start|>",
     151669, 151644, NULL, "<|im_end|>", false, true},
    {"llama3", "c05a3c2174e9edd5be19dc5a0748c42a9037bec2811ce062728bfd71f8702d78", "<|eot_id|>",
     128256, 128009, "<|begin_of_text|>", "<|end_of_text|>", false, true},
    {"llama2", "fc4f0bd70b3709312d9d1d9e5ba674794b6bc5abc17429897a540f93882f25fc", "</s>", 32000, 2,
     "<s>", "</s>", true, false},
};

static bool real_dir(const char *name, char *dir, size_t n) {
    struct stat st;
    char probe[1200];
    const char *env = getenv("DPO_TESTDATA");
    const char *bases[3] = {NULL, NULL, DPO_SOURCE_DIR "/../shared/testdata/tokenizers"};
    char b0[1024], b1[1024];
    if (env) {
        snprintf(b0, sizeof b0, "%s/tokenizers", env);
        snprintf(b1, sizeof b1, "%s", env);
        bases[0] = b0;
        bases[1] = b1;
    }
    for (int i = 0; i < 3; i++) {
        if (!bases[i]) continue;
        snprintf(probe, sizeof probe, "%s/%s/tokenizer.json", bases[i], name);
        if (stat(probe, &st) == 0) {
            snprintf(dir, n, "%s/%s", bases[i], name);
            return true;
        }
    }
    return false;
}

static int run_real(void) {
    int found = 0;
    for (size_t i = 0; i < sizeof REAL / sizeof REAL[0]; i++) {
        char dir[1100], err[1024];
        if (!real_dir(REAL[i].name, dir, sizeof dir)) {
            printf("%s: not found, skipped\n", REAL[i].name);
            continue;
        }
        found++;
        conformance(dir, REAL[i].name, false);
        conformance(dir, REAL[i].name, true);
        dpo_tokenizer_t *t = tokenizer_load(dir, err, sizeof err);
        if (!t) {
            test_fail(__FILE__, __LINE__, "%s", err);
            continue;
        }
        char want[80];
        snprintf(want, sizeof want, "bpe:%s", REAL[i].sha256);
        CHECK(strcmp(tokenizer_identity(t), want) == 0);
        CHECK(tokenizer_vocab_size(t) == REAL[i].vocab);
        CHECK(tokenizer_token_to_id(t, REAL[i].special) == REAL[i].special_id);
        CHECK(strcmp(tokenizer_id_to_token(t, REAL[i].special_id), REAL[i].special) == 0);
        CHECK(REAL[i].bos ? tokenizer_bos_token(t) && strcmp(tokenizer_bos_token(t), REAL[i].bos) == 0
                          : tokenizer_bos_token(t) == NULL);
        CHECK(tokenizer_eos_token(t) && strcmp(tokenizer_eos_token(t), REAL[i].eos) == 0);
        // llama3's config says nothing about add_bos_token (its post-processor adds BOS).
        CHECK(tokenizer_add_bos_token(t) == REAL[i].add_bos);
        CHECK((tokenizer_chat_template(t) != NULL) == REAL[i].has_template);
        tokenizer_free(t);
    }
    return found;
}

int main(int argc, char **argv) {
    load_corpus();
    if (argc > 1 && strcmp(argv[1], "--real") == 0) {
        if (run_real() == 0) {
            printf("no real tokenizers found (../shared/testdata/tokenizers or $DPO_TESTDATA): skip\n");
            return TEST_SKIP_CODE;
        }
        return test_finish("test_tokenizer --real");
    }
    test_sha256();
    static const char *tiny[] = {"tiny_bytelevel", "tiny_sp", "tiny_gpt2", "tiny_metaspace", "tiny_split"};
    for (size_t i = 0; i < sizeof tiny / sizeof tiny[0]; i++) {
        char dir[1024];
        snprintf(dir, sizeof dir, DATA "/%s", tiny[i]);
        conformance(dir, tiny[i], false);
        conformance(dir, tiny[i], true);
    }
    test_accessors_tiny();
    test_load_errors();
    for (size_t i = 0; i < n_corpus; i++) free(corpus[i].s);
    free(corpus);
    return test_finish("test_tokenizer");
}
