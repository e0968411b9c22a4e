// The libcrypto digests of digests.hpp: SHA-256 against FIPS 180-4 test vectors, incremental updates, file
// hashing, HMAC-SHA256 against RFC 4231 (also in test_bundle) and the constant-time comparison.
#include <cstdio>
#include <fstream>

#include "check.hpp"
#include "dfma/errors.hpp"
#include "digests.hpp"

using dfma::detail::Sha256;
using dfma::detail::sha256_hex;

TEST(known_vectors) {
    CHECK_EQ(sha256_hex(""), std::string("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    CHECK_EQ(sha256_hex("abc"), std::string("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    CHECK_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
             std::string("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
    CHECK_EQ(sha256_hex(std::string(1000000, 'a')),
             std::string("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"));
}

TEST(incremental_equals_one_shot) {
    std::string data;
    for (int i = 0; i < 1000; ++i) data.push_back(static_cast<char>(i * 7 + 3));
    for (std::size_t step : {1u, 3u, 55u, 56u, 63u, 64u, 65u, 200u}) {
        Sha256 s;
        for (std::size_t i = 0; i < data.size(); i += step) s.update(data.data() + i, std::min(step, data.size() - i));
        CHECK_EQ(s.hex_digest(), sha256_hex(data));
    }
}

TEST(file_hash_and_missing_file) {
    const std::string path = "sha256_test_file.bin";
    {
        std::ofstream f(path, std::ios::binary);
        f << "abc";
    }
    CHECK_EQ(dfma::detail::sha256_file(path), sha256_hex("abc"));
    std::remove(path.c_str());
    CHECK_THROWS(dfma::detail::sha256_file("no/such/file"), dfma::BundleError, "no/such/file");
}

TEST(hmac_and_constant_time_comparison) {
    // RFC 4231 test case 1 (Python's hmac gives the same; tests/contract/test_manifest_integrity.py compares the
    // runtimes' verdicts)
    CHECK_EQ(dfma::detail::hmac_sha256_hex(std::string(20, '\x0b'), "Hi There"),
             std::string("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"));
    CHECK(dfma::detail::equal_constant_time("abc", "abc"));
    CHECK(!dfma::detail::equal_constant_time("abc", "abd"));
    CHECK(!dfma::detail::equal_constant_time("abc", "abcd"));
    CHECK(dfma::detail::equal_constant_time("", ""));
}
