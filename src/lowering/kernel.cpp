#include "trnsim/lowering/kernel.h"

#include <fmt/format.h>

#include "trnsim/core/error.h"

namespace trnsim::lowering {

const std::vector<std::string>& kernel_ops() {
    static const std::vector<std::string> ops = {"gemm", "layernorm", "rmsnorm",   "softmax",  "gelu",
                                                 "silu", "transpose", "flash_fwd", "flash_bwd"};
    return ops;
}

bool is_flash(const std::string& op) {
    return op == "flash_fwd" || op == "flash_bwd";
}

namespace {
// Shapes beyond this are rejected as absurd (a single kernel of 2^40 elements per dimension product
// would not fit any HBM of the presets anyway).
constexpr std::int64_t k_max_dim = std::int64_t(1) << 24;

void check_dim(const char* flag, std::int64_t v) {
    if (v <= 0 || v > k_max_dim) {
        throw UserError(fmt::format("--{} {}: allowed 1..{}", flag, v, k_max_dim));
    }
}

LoweredKernel lower_any(const KernelRequest& r, const hw::ChipSpec& chip) {
    if (is_flash(r.op)) {
        check_dim("m", r.m);
        check_dim("k", r.k);
        check_dim("n", r.n);
        return lower_flash_attention(r, chip);
    }
    if (r.op == "gemm") {
        check_dim("m", r.m);
        check_dim("k", r.k);
        check_dim("n", r.n);
        // Inputs in their dtype; the output is FP32 for FP32 inputs, else BF16 (see gemm.cpp).
        const double out_bytes = r.dtype == DType::fp32 ? 4.0 : 2.0;
        const double bytes = static_cast<double>(dtype_bytes(r.dtype)) * (r.m * r.k + r.k * r.n) +
                             out_bytes * static_cast<double>(r.m) * static_cast<double>(r.n);
        if (bytes > static_cast<double>(chip.memory_capacity.count)) {
            throw UserError(fmt::format("gemm {}x{}x{}: operands need {} but chip.memory.capacity is {}", r.m, r.k, r.n,
                                        to_string(Bytes{static_cast<std::uint64_t>(bytes)}),
                                        to_string(chip.memory_capacity)));
        }
        return lower_gemm(r, chip);
    }
    for (const auto& op : kernel_ops()) {
        if (op == r.op) {
            check_dim("rows", r.rows);
            check_dim("cols", r.cols);
            if (static_cast<double>(r.rows) * static_cast<double>(r.cols) > 1e12) {
                throw UserError(fmt::format("{} {}x{}: more than 1e12 elements", r.op, r.rows, r.cols));
            }
            return lower_elementwise(r, chip);
        }
    }
    std::string allowed;
    for (const auto& op : kernel_ops()) allowed += (allowed.empty() ? "" : ", ") + op;
    throw UserError(fmt::format("unknown kernel '{}'; allowed: {}", r.op, allowed));
}

}  // namespace

LoweredKernel lower_kernel(const KernelRequest& r, const hw::ChipSpec& chip) {
    LoweredKernel k = lower_any(r, chip);
    if (k.outputs.empty()) k.outputs = {k.output};
    return k;
}

}  // namespace trnsim::lowering
