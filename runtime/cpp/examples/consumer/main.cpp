// Minimal service-side use of the DFMA C++ runtime: load a bundle once, predict one sample.
//   my_service BUNDLE_DIR [IMAGE_FILE]
#include <iostream>

#include <dfma/dfma.hpp>

int main(int argc, char** argv) {
    if (argc < 2) {
        std::cerr << "usage: " << argv[0] << " BUNDLE_DIR [IMAGE_FILE]\n";
        return 2;
    }
    try {
        // Load once (verifies every file hash, builds one ONNX Runtime session); share across threads.
        const dfma::Extractor extractor = dfma::Extractor::load(argv[1]);

        dfma::Sample sample;
        sample.words = {"Barack", "Obama", "visits", "Paris", "with", "Michelle", "."};
        sample.head = {0, 2};  // "Barack Obama" (word indices, end exclusive)
        sample.tail = {5, 6};  // "Michelle"
        if (argc > 2) sample.image = dfma::Image::from_file(argv[2]);  // JPEG or PNG; optional

        const dfma::Prediction p = extractor.predict(sample);
        std::cout << p.label << " (" << p.probability << ")\n";
        return 0;
    } catch (const dfma::InputError& e) {  // bad spans, words, crops; ImageError is an InputError
        std::cerr << "bad request: " << e.what() << "\n";
    } catch (const dfma::Error& e) {  // BundleError (missing file, hash mismatch), InferenceError
        std::cerr << "error: " << e.what() << "\n";
    }
    return 1;
}
