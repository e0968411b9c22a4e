// predict() from 8 threads at once gives exactly the sequential results (one shared session; the
// stage graphs too, with predict_batch and predict_pairs mixed in).
#include <atomic>
#include <thread>

#include "check.hpp"
#include "dfma/extractor.hpp"
#include "toy_samples.hpp"

TEST(eight_threads_equal_sequential) {
    const auto ex = dfma::Extractor::load(check::data_dir() + "/toy_bundle");
    const auto cases = toy_cases();
    std::vector<std::vector<float>> sequential;
    for (const auto& c : cases) sequential.push_back(ex.predict(c.sample).logits);
    std::atomic<int> mismatches{0}, errors{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
        threads.emplace_back([&, t] {
            for (int round = 0; round < 25; ++round) {
                const std::size_t i = static_cast<std::size_t>(t + round) % cases.size();
                try {
                    if (ex.predict(cases[i].sample).logits != sequential[i]) ++mismatches;
                    if (round % 5 == 0) {  // mixed with batches
                        std::vector<dfma::Sample> batch = {cases[i].sample, cases[(i + 1) % cases.size()].sample};
                        auto p = ex.predict_batch(batch);
                        if (max_abs_diff(p[0].logits, sequential[i]) > 1e-5f) ++mismatches;
                    }
                } catch (const std::exception&) {
                    ++errors;
                }
            }
        });
    }
    for (auto& th : threads) th.join();
    CHECK_EQ(mismatches.load(), 0);
    CHECK_EQ(errors.load(), 0);
}

TEST(eight_threads_on_the_two_stage_pair) {  // predict, predict_batch and predict_pairs mixed
    const auto ex = dfma::Extractor::load(check::data_dir() + "/toy_two_stage");
    const auto cases = toy_cases();
    std::vector<std::vector<float>> sequential;
    for (const auto& c : cases) sequential.push_back(ex.predict(c.sample).logits);
    dfma::PairsSample ps;
    ps.words = cases[2].sample.words;
    ps.entities = {{0, 1}, {2, 3}, {4, 7}};
    ps.image = cases[2].sample.image;
    ps.crops = cases[2].sample.crops;
    const auto pairs = ex.predict_pairs(ps);
    std::atomic<int> mismatches{0}, errors{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
        threads.emplace_back([&, t] {
            for (int round = 0; round < 12; ++round) {
                const std::size_t i = static_cast<std::size_t>(t + round) % cases.size();
                try {
                    if (max_abs_diff(ex.predict(cases[i].sample).logits, sequential[i]) > 1e-5f) ++mismatches;
                    std::vector<dfma::Sample> batch = {cases[i].sample, cases[(i + 1) % cases.size()].sample, cases[i].sample};
                    const auto p = ex.predict_batch(batch);
                    if (max_abs_diff(p[2].logits, sequential[i]) > 1e-5f) ++mismatches;
                    if (round % 4 == 0) {
                        const auto again = ex.predict_pairs(ps);
                        for (std::size_t k = 0; k < again.size(); ++k)
                            if (max_abs_diff(again[k].logits, pairs[k].logits) > 1e-5f) ++mismatches;
                    }
                } catch (const std::exception&) {
                    ++errors;
                }
            }
        });
    }
    for (auto& th : threads) th.join();
    CHECK_EQ(mismatches.load(), 0);
    CHECK_EQ(errors.load(), 0);
}
