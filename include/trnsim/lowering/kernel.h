#pragma once
// Operators lowered into NeuronCore programs: GEMM (tiled, blocked for reuse, double-buffered, like an
// optimised NKI kernel), layernorm, rmsnorm, softmax, gelu, silu, transpose, and the fused flash-attention
// forward and backward of one attention head (flash_fwd, flash_bwd).

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "trnsim/core/numeric.h"
#include "trnsim/hw/chip.h"
#include "trnsim/hw/isa.h"

namespace trnsim::lowering {

struct KernelRequest {
    std::string op;                    // gemm | layernorm | rmsnorm | softmax | gelu | silu | transpose | flash_*
    std::int64_t m = 0, k = 0, n = 0;  // gemm; flash: m queries, n keys, k head dimension
    std::int64_t rows = 0, cols = 0;   // the row-wise ops and transpose
    DType dtype = DType::bf16;
    // flash: query i (0-based) sits at position q_offset + i of the keys' sequence; causal: it attends to
    // keys 0 .. q_offset + i only.
    bool causal = false;
    std::int64_t q_offset = 0;
    // flash: the attention probabilities pass through dropout (the model's attention dropout, rate
    // k_attention_dropout): nki.isa.dropout on the Vector engine, on P in the forward, on P and dP in the
    // backward (the mask regenerated from the seed).
    bool dropout = false;
};
// The rate the flash kernels' dropout instructions carry (the GPT-3 and BERT presets' 0.1); their time
// does not depend on it.
constexpr float k_attention_dropout = 0.1f;

struct LoweredKernel {
    hw::Program program;
    double flops = 0;                                         // model FLOPs of the operator
    std::vector<std::pair<std::string, std::int64_t>> shape;  // (m, k, n) or (rows, cols), in that order
    std::map<std::string, std::int64_t> plan;                 // tiling decisions, for reports and tests
    std::vector<int> inputs;                                  // DRAM tensors the host fills
    int output = -1;                                          // DRAM tensor the kernel writes (the first)
    std::vector<int> outputs;                                 // every DRAM tensor it writes, `output` first
    bool output_transposed = false;                           // gemm ws: the output is C^T
};

const std::vector<std::string>& kernel_ops();
// flash_fwd or flash_bwd: the fused attention kernels, which take m, k, n and the mask fields.
bool is_flash(const std::string& op);

// Throws UserError for shapes that are non-positive, absurd, or cannot be tiled into SBUF/PSUM.
LoweredKernel lower_kernel(const KernelRequest& request, const hw::ChipSpec& chip);

LoweredKernel lower_gemm(const KernelRequest& request, const hw::ChipSpec& chip);
LoweredKernel lower_elementwise(const KernelRequest& request, const hw::ChipSpec& chip);
LoweredKernel lower_flash_attention(const KernelRequest& request, const hw::ChipSpec& chip);

}  // namespace trnsim::lowering
