// test_pairs.c — the pieces of dpo_pairs that must behave as Python does (src/prep/pairs.c):
// float repr, json.dumps encoding, sum() and int/float arithmetic, the rollout field
// extraction with its error messages, and the pairing rules (ties, order, gaps).
// End-to-end comparison with NeMo Gym's script: tests/pairs.sh.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dpo/pairs.h"
#include "testutil.h"

static void check_repr(double x, const char *want) {
    char got[40];
    pairs_format_double(x, got, sizeof got);
    if (strcmp(got, want) != 0) test_fail(__FILE__, __LINE__, "repr(%a) = %s, want %s", x, got, want);
}

static void test_repr(void) {
    // Expected strings are Python's repr of the same doubles.
    static const struct {
        double x;
        const char *s;
    } cases[] = {
        {0x0.0p+0, "0.0"},
        {-0x0.0p+0, "-0.0"},
        {0x1.0000000000000p+0, "1.0"},
        {0x1.999999999999ap-4, "0.1"},
        {0x1.9999999999999p-3, "0.19999999999999998"},  // 0.3 - 0.1
        {0x1.9999999999998p-3, "0.19999999999999996"},  // 0.7 - 0.5
        {0x1.3333333333334p-2, "0.30000000000000004"},
        {0x1.4f8b588e368f1p-17, "1e-05"},
        {0x1.a36e2eb1c432dp-14, "0.0001"},
        {0x1.1c37937e08000p+53, "1e+16"},
        {0x1.c6bf526340000p+49, "1000000000000000.0"},
        {0x1.b69b4ba630f35p+56, "1.2345678901234568e+17"},
        {0x1.1eb2d66005835p+997, "1.5e+300"},
        {0x0.0000000000001p-1022, "5e-324"},
        {0x1.fffffffffffffp+1023, "1.7976931348623157e+308"},
        {0x1.0000000000000p-1022, "2.2250738585072014e-308"},
        {0x1.52d02c7e14af6p+76, "1e+23"},
        {0x1.0000000000000p+53, "9007199254740992.0"},
        {-0x1.4000000000000p+1, "-2.5"},
        {0x1.9000000000000p+6, "100.0"},
        {0x1.34a456d5cfaadp+10, "1234.5678"},
        {0x0.0000000000003p-1022, "1.5e-323"},
        {0x1.0000000000000p-30, "9.313225746154785e-10"},
        {0x1.0000000000000p+60, "1.152921504606847e+18"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_repr(cases[i].x, cases[i].s);
    check_repr(INFINITY, "Infinity");
    check_repr(-INFINITY, "-Infinity");
    // Every repr reads back exactly (a sweep over magnitudes and mantissas).
    for (int e = -320; e <= 300; e += 7)
        for (int k = 1; k < 40; k += 3) {
            double x = (double)k * pow(10.0, e) / 3.0;
            char s[40];
            pairs_format_double(x, s, sizeof s);
            CHECK(strtod(s, NULL) == x);
        }
}

static void check_json(const char *in, int indent, const char *want) {
    json_error_t je;
    json_t *v = json_loads(in, JSON_DECODE_ANY, &je);
    if (!v) {
        test_fail(__FILE__, __LINE__, "bad test JSON %s: %s", in, je.text);
        return;
    }
    pairs_buf_t b = {0};
    pairs_json_encode(&b, v, indent);
    if (strcmp(b.p, want) != 0) test_fail(__FILE__, __LINE__, "encode(%s) = %s, want %s", in, b.p, want);
    pairs_buf_free(&b);
    json_decref(v);
}

static void test_json(void) {
    // As Python's json.dumps (ensure_ascii, default separators).
    check_json("\"caf\xc3\xa9 \xf0\x9f\x98\x80 \\\" \\\\ / \\n\\t\\r\\b\\f \\u0001 \x7f\"", -1,
               "\"caf\\u00e9 \\ud83d\\ude00 \\\" \\\\ / \\n\\t\\r\\b\\f \\u0001 \\u007f\"");
    check_json("{\"b\": [1, 2.5, true, false, null], \"a\": {}, \"c\": []}", -1,
               "{\"b\": [1, 2.5, true, false, null], \"a\": {}, \"c\": []}");
    check_json("{\"k\": [1, {\"x\": \"y\"}], \"e\": []}", 2,
               "{\n  \"k\": [\n    1,\n    {\n      \"x\": \"y\"\n    }\n  ],\n  \"e\": []\n}");
    check_json("[1.0, 1e16, -0.0]", -1, "[1.0, 1e+16, -0.0]");
}

static void test_numbers(void) {
    pairs_num_t g = pairs_num_sub(pairs_num_int(1), pairs_num_int(0));
    CHECK(g.is_int && g.i == 1);
    g = pairs_num_sub(pairs_num_int(1), pairs_num_real(0.25));
    CHECK(!g.is_int && g.d == 0.75);
    g = pairs_num_sub(pairs_num_real(0.3), pairs_num_real(0.1));
    CHECK(!g.is_int && g.d < 0.2);  // 0.19999999999999998, as in Python

    // sum([0.1] * 10) is 1.0 with compensation (Python >= 3.12), not 0.9999999999999999.
    pairs_sum_t s = {0};
    for (int i = 0; i < 10; i++) pairs_sum_add(&s, pairs_num_real(0.1));
    CHECK(pairs_sum_value(&s).d == 1.0);
    // Integers stay an exact integer sum.
    s = (pairs_sum_t){0};
    pairs_sum_add(&s, pairs_num_int(3));
    pairs_sum_add(&s, pairs_num_int(4));
    CHECK(pairs_sum_value(&s).is_int && pairs_sum_value(&s).i == 7);
    pairs_sum_add(&s, pairs_num_real(0.5));
    CHECK(!pairs_sum_value(&s).is_int && pairs_sum_value(&s).d == 7.5);
    // sum([-0.0]) keeps the sign of zero only after a float start: 0 + -0.0 == 0.0.
    s = (pairs_sum_t){0};
    pairs_sum_add(&s, pairs_num_real(-0.0));
    CHECK(!signbit(pairs_sum_value(&s).d));
}

// Parses one rollout; returns 0 or -1, with the error in err.
static int parse(const char *text, pairs_context_t ctx, pairs_rollout_t *r, char *err, size_t len) {
    json_error_t je;
    json_t *v = json_loads(text, 0, &je);
    if (!v) {
        test_fail(__FILE__, __LINE__, "bad test JSON %s: %s", text, je.text);
        exit(1);
    }
    int rc = pairs_rollout_parse(v, ctx, r, err, len);
    json_decref(v);
    return rc;
}

static void expect_rollout(const char *text, pairs_context_t ctx, const char *prompt,
                           const char *response, const char *reward) {
    pairs_rollout_t r;
    char err[512] = "";
    if (parse(text, ctx, &r, err, sizeof err) != 0) {
        test_fail(__FILE__, __LINE__, "%s: %s", text, err);
        return;
    }
    if (strcmp(r.prompt, prompt) != 0) test_fail(__FILE__, __LINE__, "prompt %s, want %s", r.prompt, prompt);
    if (strcmp(r.response, response) != 0)
        test_fail(__FILE__, __LINE__, "response %s, want %s", r.response, response);
    if (strcmp(r.reward_text, reward) != 0)
        test_fail(__FILE__, __LINE__, "reward %s, want %s", r.reward_text, reward);
    pairs_rollout_free(&r);
}

static void expect_error(const char *text, const char *want) {
    pairs_rollout_t r;
    char err[512] = "";
    if (parse(text, PAIRS_CONTEXT_LAST, &r, err, sizeof err) == 0) {
        test_fail(__FILE__, __LINE__, "%s parsed; want an error with %s", text, want);
        pairs_rollout_free(&r);
        return;
    }
    if (!strstr(err, want)) test_fail(__FILE__, __LINE__, "error \"%s\" lacks \"%s\"", err, want);
}

static void test_rollouts(void) {
    const char *multi = "{\"responses_create_params\": {\"input\": ["
                        "{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", \"content\": \"U1\"},"
                        "{\"role\": \"assistant\", \"content\": \"A\"}, {\"role\": \"user\", \"content\": \"U2\"},"
                        "{\"type\": \"function_call_output\", \"output\": \"o\"}]},"
                        "\"output\": [{\"type\": \"message\", \"content\": [{\"text\": \"first\"}]},"
                        "{\"type\": \"message\", \"content\": [{\"text\": \"last\"}, {\"text\": \"2nd part\"}]},"
                        "{\"type\": \"reasoning\", \"summary\": []},"
                        "{\"type\": \"message\", \"content\": []}], \"reward\": 2}";
    expect_rollout(multi, PAIRS_CONTEXT_LAST, "\"U2\"", "\"last\"", "2");
    expect_rollout(multi, PAIRS_CONTEXT_FULL,
                   "[{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", \"content\": \"U1\"}, "
                   "{\"role\": \"assistant\", \"content\": \"A\"}, {\"role\": \"user\", \"content\": \"U2\"}]",
                   "\"last\"", "2");
    // Missing pieces take the script's defaults: "" and 0.0.
    expect_rollout("{\"responses_create_params\": {\"input\": [{\"role\": \"system\"}]}, \"output\": []}",
                   PAIRS_CONTEXT_LAST, "\"\"", "\"\"", "0.0");
    expect_rollout("{\"responses_create_params\": {\"input\": [{\"role\": \"user\"}]}, "
                   "\"output\": [{\"type\": \"message\", \"content\": [{\"refusal\": \"no\"}]}], \"reward\": 0.5}",
                   PAIRS_CONTEXT_LAST, "\"\"", "\"\"", "0.5");
    // A string input is one user message; string content is the response.
    expect_rollout("{\"responses_create_params\": {\"input\": \"hi\"}, "
                   "\"output\": [{\"type\": \"message\", \"content\": \"yo\"}], \"reward\": -1e-7}",
                   PAIRS_CONTEXT_FULL, "[{\"role\": \"user\", \"content\": \"hi\"}]", "\"yo\"", "-1e-07");

    expect_error("[]", "must be a JSON object");
    expect_error("{\"output\": []}", "missing \"responses_create_params\"");
    expect_error("{\"responses_create_params\": {}, \"output\": []}", "missing \"responses_create_params.input\"");
    expect_error("{\"responses_create_params\": {\"input\": []}}", "missing \"output\"");
    expect_error("{\"responses_create_params\": {\"input\": 1}, \"output\": []}", "input\" must be an array");
    expect_error("{\"responses_create_params\": {\"input\": [[]]}, \"output\": []}", "input[0]\" must be an object");
    expect_error("{\"responses_create_params\": {\"input\": []}, \"output\": \"x\"}", "\"output\" must be an array");
    expect_error("{\"responses_create_params\": {\"input\": []}, \"output\": [], \"reward\": \"0.5\"}",
                 "\"reward\" must be a number, not a string");
    expect_error("{\"responses_create_params\": {\"input\": []}, \"output\": [], \"reward\": false}",
                 "\"reward\" must be a number, not a boolean");
    expect_error("{\"responses_create_params\": {\"input\": []}, "
                 "\"output\": [{\"type\": \"message\", \"content\": [{\"text\": 3}]}]}",
                 "output[0].content[0].text\" must be a string");
}

// Pairing: records collected as "chosen>rejected" by response text.
typedef struct {
    char log[512];
} collect_t;

static int collect(void *user, const pairs_rollout_t *c, const pairs_rollout_t *r, pairs_num_t gap) {
    collect_t *k = user;
    char g[40];
    pairs_format_num(gap, g, sizeof g);
    size_t n = strlen(k->log);
    snprintf(k->log + n, sizeof k->log - n, "%s>%s:%s ", c->response, r->response, g);
    return 0;
}

static pairs_rollout_t mk(const char *prompt, const char *response, pairs_num_t reward) {
    pairs_rollout_t r = {0};
    r.prompt = (char *)prompt;
    r.key = (char *)prompt;
    r.response = (char *)response;
    r.reward = reward;
    return r;
}

static void test_pairing(void) {
    pairs_rollout_t r[] = {
        mk("p", "a", pairs_num_real(1.0)),  mk("q", "b", pairs_num_real(0.3)),
        mk("p", "c", pairs_num_real(0.25)), mk("p", "d", pairs_num_real(1.0)),
        mk("q", "e", pairs_num_real(0.1)),  mk("p", "f", pairs_num_real(0.25)),
        mk("s", "g", pairs_num_int(1)),     mk("t", "h", pairs_num_real(0.5)),
        mk("t", "i", pairs_num_real(0.5)),
    };
    size_t n = sizeof r / sizeof r[0], np = 0;
    collect_t k = {{0}};
    // p: first maximum (a) vs last minimum (f); q: 0.3 - 0.1 < 0.2; t: tie, gap 0 < 0.2.
    CHECK(pairs_same_prompt(r, n, 0.2, &np, collect, &k) == 0);
    CHECK(np == 4);
    if (strcmp(k.log, "a>f:0.75 ") != 0) test_fail(__FILE__, __LINE__, "same_prompt: %s", k.log);
    k = (collect_t){{0}};
    // min_gap 0: ties pair the first with the last of the group.
    pairs_same_prompt(r, n, 0.0, &np, collect, &k);
    if (strcmp(k.log, "a>f:0.75 b>e:0.19999999999999998 h>i:0.0 ") != 0)
        test_fail(__FILE__, __LINE__, "same_prompt min_gap 0: %s", k.log);
    k = (collect_t){{0}};
    // Stratified: high-major, file order on both sides (int 1 - 0.3 is the float 0.7).
    pairs_stratified(r, n, 0.2, 0.7, 0.3, collect, &k);
    if (strcmp(k.log, "a>b:0.7 a>c:0.75 a>e:0.9 a>f:0.75 d>b:0.7 d>c:0.75 d>e:0.9 d>f:0.75 "
                      "g>b:0.7 g>c:0.75 g>e:0.9 g>f:0.75 ") != 0)
        test_fail(__FILE__, __LINE__, "stratified: %s", k.log);
}

int main(void) {
    test_repr();
    test_json();
    test_numbers();
    test_rollouts();
    test_pairing();
    return test_finish("test_pairs");
}
