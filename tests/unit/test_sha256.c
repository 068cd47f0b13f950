/*
 * test_sha256.c - unit tests of SHA-256 (src/core/sha256.c).
 *
 * The vectors are the ones NIST publishes for FIPS 180-4 (the "SHA-256" examples and the
 * long-message test): the empty message, "abc", the 448-bit and 896-bit messages, and one
 * million 'a'. The padding boundaries (55, 56, 63, 64, 65, 119, 120, 128 bytes) are checked
 * against digests computed with coreutils' sha256sum, and every way of splitting a message into
 * two or three updates must give the one-shot digest.
 */
#include "asr/sha256.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

static void hex_of(const void *msg, size_t n, char hex[65])
{
    uint8_t d[ASR_SHA256_LEN];
    asr_sha256(msg, n, d);
    asr_sha256_hex(d, hex);
}

static void test_nist_vectors(void **state)
{
    (void)state;
    static const struct {
        const char *msg;
        const char *digest;
    } v[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        /* 448 bits: one block of message, padding spills into a second block */
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        /* 896 bits */
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrl"
         "mnopqrsmnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char hex[65];
        hex_of(v[i].msg, strlen(v[i].msg), hex);
        assert_string_equal(hex, v[i].digest);
    }
    /* NULL with length 0 is the empty message. */
    char hex[65];
    hex_of(NULL, 0, hex);
    assert_string_equal(hex, v[0].digest);
}

static void test_million_a(void **state)
{
    (void)state;
    static const char want[] = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
    char *m = malloc(1000000);
    assert_non_null(m);
    memset(m, 'a', 1000000);
    char hex[65];
    hex_of(m, 1000000, hex);
    assert_string_equal(hex, want);

    /* Streamed in uneven pieces (1, 2, ..., 999 bytes, repeating). */
    struct asr_sha256 c;
    uint8_t d[ASR_SHA256_LEN];
    asr_sha256_init(&c);
    size_t off = 0, piece = 1;
    while (off < 1000000) {
        size_t n = piece < 1000000 - off ? piece : 1000000 - off;
        asr_sha256_update(&c, m + off, n);
        off += n;
        piece = piece % 999 + 1;
    }
    asr_sha256_final(&c, d);
    asr_sha256_hex(d, hex);
    assert_string_equal(hex, want);

    /* And one byte at a time. */
    asr_sha256_init(&c);
    for (size_t i = 0; i < 1000000; i++)
        asr_sha256_update(&c, "a", 1);
    asr_sha256_final(&c, d);
    asr_sha256_hex(d, hex);
    assert_string_equal(hex, want);
    free(m);
}

static void test_padding_boundaries(void **state)
{
    (void)state;
    static const struct {
        size_t n;
        const char *digest;
    } v[] = {
        {55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
        {56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
        {63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34"},
        {64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
        {65, "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0"},
        {119, "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb"},
        {120, "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c"},
        {128, "6836cf13bac400e9105071cd6af47084dfacad4e5e302c94bfed24e013afb73e"},
    };
    char m[128];
    memset(m, 'a', sizeof(m));
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char hex[65];
        hex_of(m, v[i].n, hex);
        assert_string_equal(hex, v[i].digest);
    }
}

static void test_every_split(void **state)
{
    (void)state;
    uint8_t m[200];
    for (size_t i = 0; i < sizeof(m); i++)
        m[i] = (uint8_t)(i * 37 + 11);
    for (size_t n = 0; n <= sizeof(m); n++) {
        uint8_t want[ASR_SHA256_LEN];
        asr_sha256(m, n, want);
        for (size_t a = 0; a <= n; a++) {
            size_t b = a + (n - a) / 2; /* a third piece in the middle of the rest */
            struct asr_sha256 c;
            uint8_t got[ASR_SHA256_LEN];
            asr_sha256_init(&c);
            asr_sha256_update(&c, m, a);
            asr_sha256_update(&c, m + a, b - a);
            asr_sha256_update(&c, m + b, n - b);
            asr_sha256_final(&c, got);
            assert_memory_equal(got, want, ASR_SHA256_LEN);
        }
    }
}

static void test_hex(void **state)
{
    (void)state;
    uint8_t d[ASR_SHA256_LEN];
    for (int i = 0; i < ASR_SHA256_LEN; i++)
        d[i] = (uint8_t)(i * 8 + 7);
    char hex[65];
    asr_sha256_hex(d, hex);
    assert_string_equal(hex, "070f171f272f373f474f575f676f777f878f979fa7afb7bfc7cfd7dfe7eff7ff");
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nist_vectors),
        cmocka_unit_test(test_million_a),
        cmocka_unit_test(test_padding_boundaries),
        cmocka_unit_test(test_every_split),
        cmocka_unit_test(test_hex),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
