// The samples of data/expected.json as dfma::Sample, with their expected logits.
#pragma once

#include <fstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "check.hpp"
#include "dfma/extractor.hpp"

struct ToyCase {
    dfma::Sample sample;
    std::vector<float> logits;
};

inline std::vector<ToyCase> toy_cases() {
    nlohmann::json j;
    std::ifstream(check::data_dir() + "/expected.json") >> j;
    std::vector<ToyCase> out;
    const std::string images = check::data_dir() + "/images/";
    for (const auto& s : j["samples"]) {
        ToyCase c;
        c.sample.words = s["words"].get<std::vector<std::string>>();
        c.sample.head = {s["head"][0], s["head"][1]};
        c.sample.tail = {s["tail"][0], s["tail"][1]};
        if (s.contains("image")) c.sample.image = dfma::Image::from_file(images + s["image"].get<std::string>());
        if (s.contains("crops"))
            for (const auto& name : s["crops"])
                c.sample.crops.push_back(name.is_null() ? std::nullopt
                                                        : std::optional<dfma::Image>(dfma::Image::from_file(images + name.get<std::string>())));
        c.logits = s["logits"].get<std::vector<float>>();
        out.push_back(std::move(c));
    }
    return out;
}

inline float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    if (a.size() != b.size()) return 1e30f;
    float m = 0.f;
    for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
    return m;
}
