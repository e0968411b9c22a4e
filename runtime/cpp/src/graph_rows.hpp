// Catalogue rows as the manifest records them (dfma/contract/graphs.py): which graphs ONNX Runtime's CPU
// provider runs, and in which order it prefers them on this host (dfma/backends/ort_runner.py).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace dfma::detail {

class Bundle;

/// A TensorRT engine entry (kind "tensorrt" or a .plan file).
bool is_engine(const nlohmann::json& entry);
/// ONNX Runtime CPU runs it: not an engine, "cpu" in devices (a manifest without devices: any graph).
bool runs_on_ort_cpu(const nlohmann::json& entry);
/// 0: meant for this CPU class (`cpu_classes` lists it); 1: for any class (null or absent); 2: for others.
int host_rank(const nlohmann::json& entry, const std::string& cpu_class);
/// Fused ONNX Runtime kernels: ops "com.microsoft" (kind "onnxruntime" when ops is absent).
bool is_fused(const nlohmann::json& entry);

/// The two files of a graph's stage graphs (`graphs.<key>.stages`).
struct StageFiles {
    std::string vision, text;
};
/// Graph `key`'s stage graphs when its entry has them and the manifest lists their files, else nothing
/// (dfma.contract.graphs.stage_files).
std::optional<StageFiles> stage_files(const Bundle& b, const std::string& key);

/// Keys of the graphs ONNX Runtime's CPU provider runs whose file the manifest lists, manifest order.
std::vector<std::string> ort_cpu_graphs(const Bundle& b);
/// Those of one precision, best first: (host_rank, fused first), as OrtRunner.preference on the CPU.
std::vector<std::string> ort_cpu_ordered(const Bundle& b, const std::string& precision, const std::string& cpu_class);

}  // namespace dfma::detail
