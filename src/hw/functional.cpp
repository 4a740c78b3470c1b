#include "trnsim/hw/functional.h"

#include <cmath>
#include <stdexcept>

namespace trnsim::hw {

float apply_activation(ActFunc f, float x) {
    switch (f) {
        case ActFunc::identity: return x;
        case ActFunc::exp: return std::exp(x);
        case ActFunc::gelu_tanh: {
            const float k = 0.7978845608028654f;  // sqrt(2/pi)
            return 0.5f * x * (1.0f + std::tanh(k * (x + 0.044715f * x * x * x)));
        }
        case ActFunc::silu: return x / (1.0f + std::exp(-x));
        case ActFunc::rsqrt: return 1.0f / std::sqrt(x);
        case ActFunc::square: return x * x;
        case ActFunc::reciprocal: return 1.0f / x;
        case ActFunc::ln: return std::log(x);
    }
    return x;
}

float apply_alu(AluOp op, float a, float b) {
    switch (op) {
        case AluOp::none: return a;
        case AluOp::add: return a + b;
        case AluOp::subtract: return a - b;
        case AluOp::multiply: return a * b;
        case AluOp::max: return std::max(a, b);
        case AluOp::divide: return a / b;
    }
    return a;
}

FunctionalState::FunctionalState(const Program& program) : m_program(program) {
    for (const auto& t : program.dram) m_dram.emplace_back(static_cast<std::size_t>(t.rows * t.cols), 0.0f);
    for (const auto& b : program.buffers) m_buffers.emplace_back(static_cast<std::size_t>(b.rows) * b.cols, 0.0f);
}

float& FunctionalState::at(const TileRef& t, int r, int c) {
    const auto& decl = m_program.buffers[static_cast<std::size_t>(t.buffer)];
    return m_buffers[static_cast<std::size_t>(t.buffer)]
                    [static_cast<std::size_t>(t.row0 + r) * decl.cols + static_cast<std::size_t>(t.col0 + c)];
}

float FunctionalState::scalar(const Scalar& s, int r) {
    return s.per_row ? at(s.tile, r, 0) : s.value;
}

void FunctionalState::execute(const Instruction& ins) {
    auto dtype_of = [&](const TileRef& t) { return m_program.buffers[static_cast<std::size_t>(t.buffer)].dtype; };
    switch (ins.op) {
        case Op::load_stationary: {
            m_stationary_k = ins.src0.rows;
            m_stationary_c = ins.src0.cols;
            m_stationary.resize(static_cast<std::size_t>(m_stationary_k) * m_stationary_c);
            for (int k = 0; k < m_stationary_k; ++k)
                for (int c = 0; c < m_stationary_c; ++c)
                    m_stationary[static_cast<std::size_t>(k) * m_stationary_c + c] = at(ins.src0, k, c);
            return;
        }
        case Op::multiply_moving: {
            const int k_rows = ins.src0.rows;
            if (k_rows != m_stationary_k) throw std::logic_error("multiply_moving: K differs from the stationary's");
            std::vector<float> column(static_cast<std::size_t>(k_rows));
            for (int n = 0; n < ins.src0.cols; ++n) {
                for (int k = 0; k < k_rows; ++k) column[static_cast<std::size_t>(k)] = at(ins.src0, k, n);
                for (int c = 0; c < m_stationary_c; ++c) {
                    float s = 0.0f;
                    for (int k = 0; k < k_rows; ++k) {
                        const float product = m_stationary[static_cast<std::size_t>(k) * m_stationary_c + c] *
                                              column[static_cast<std::size_t>(k)];
                        s = s + product;
                    }
                    float& out = at(ins.dst, c, n);
                    out = ins.accumulate ? out + s : s;
                }
            }
            return;
        }
        case Op::matmul_os: {
            for (int r = 0; r < ins.dst.rows; ++r)
                for (int c = 0; c < ins.dst.cols; ++c) {
                    float s = 0.0f;
                    for (int k = 0; k < ins.src0.rows; ++k) {
                        const float product = at(ins.src0, k, r) * at(ins.src1, k, c);
                        s = s + product;
                    }
                    float& out = at(ins.dst, r, c);
                    out = ins.accumulate ? out + s : s;
                }
            return;
        }
        case Op::dma_load: {
            const auto& t = m_program.dram[static_cast<std::size_t>(ins.dram.tensor)];
            const auto& src = m_dram[static_cast<std::size_t>(ins.dram.tensor)];
            const bool convert = t.dtype != dtype_of(ins.dst);
            const bool broadcast = ins.dram.rows == 1 && ins.dst.rows > 1;
            for (int r = 0; r < ins.dst.rows; ++r)
                for (int c = 0; c < ins.dst.cols; ++c) {
                    const std::int64_t row = ins.dram.row0 + (broadcast ? 0 : r);
                    const float v = src[static_cast<std::size_t>(row * t.cols + ins.dram.col0 + c)];
                    at(ins.dst, r, c) = convert ? round_to(dtype_of(ins.dst), v) : v;
                }
            return;
        }
        case Op::dma_store: {
            const auto& t = m_program.dram[static_cast<std::size_t>(ins.dram.tensor)];
            auto& dst = m_dram[static_cast<std::size_t>(ins.dram.tensor)];
            const bool convert = t.dtype != dtype_of(ins.src0);
            for (int r = 0; r < ins.src0.rows; ++r)
                for (int c = 0; c < ins.src0.cols; ++c) {
                    const float v = at(ins.src0, r, c);
                    dst[static_cast<std::size_t>((ins.dram.row0 + r) * t.cols + ins.dram.col0 + c)] =
                        convert ? round_to(t.dtype, v) : v;
                }
            return;
        }
        default: break;
    }

    // Vector / Scalar / GpSimd element-wise and reduction instructions (compute in FP32).
    const DType out_type = dtype_of(ins.dst);
    const int rows = ins.dst.rows;
    switch (ins.op) {
        case Op::tensor_copy:
            for (int r = 0; r < rows; ++r)
                for (int c = 0; c < ins.dst.cols; ++c) at(ins.dst, r, c) = round_to(out_type, at(ins.src0, r, c));
            return;
        case Op::activation:
            for (int r = 0; r < rows; ++r) {
                const float scale = ins.scalar0.per_row || ins.scalar0.value != 0.0f ? scalar(ins.scalar0, r) : 1.0f;
                const float bias = scalar(ins.scalar1, r);
                float sum = 0.0f;
                for (int c = 0; c < ins.dst.cols; ++c) {
                    const float v = apply_activation(ins.func, at(ins.src0, r, c) * scale + bias);
                    sum += v;
                    at(ins.dst, r, c) = round_to(out_type, v);
                }
                if (ins.accumulate) at(ins.acc, r, 0) = round_to(dtype_of(ins.acc), sum);
            }
            return;
        case Op::exponential:
            for (int r = 0; r < rows; ++r) {
                const float max_value = scalar(ins.scalar0, r);
                float sum = 0.0f;
                for (int c = 0; c < ins.dst.cols; ++c) {
                    const float v = std::exp(at(ins.src0, r, c) - max_value);
                    sum += v;
                    at(ins.dst, r, c) = round_to(out_type, v);
                }
                if (ins.accumulate) at(ins.acc, r, 0) = round_to(dtype_of(ins.acc), sum);
            }
            return;
        case Op::tensor_scalar:
            for (int r = 0; r < rows; ++r) {
                const float s0 = scalar(ins.scalar0, r);
                const float s1 = scalar(ins.scalar1, r);
                for (int c = 0; c < ins.dst.cols; ++c)
                    at(ins.dst, r, c) =
                        round_to(out_type, apply_alu(ins.alu1, apply_alu(ins.alu0, at(ins.src0, r, c), s0), s1));
            }
            return;
        case Op::tensor_tensor:
            for (int r = 0; r < rows; ++r)
                for (int c = 0; c < ins.dst.cols; ++c)
                    at(ins.dst, r, c) = round_to(out_type, apply_alu(ins.alu0, at(ins.src0, r, c), at(ins.src1, r, c)));
            return;
        case Op::tensor_reduce:
            for (int r = 0; r < rows; ++r) {
                float acc = at(ins.src0, r, 0);
                for (int c = 1; c < ins.src0.cols; ++c) acc = apply_alu(ins.alu0, acc, at(ins.src0, r, c));
                at(ins.dst, r, 0) = round_to(out_type, acc);
            }
            return;
        case Op::bn_stats: {
            // Per chunk of up to 512 elements: count, mean, population variance (3 values).
            constexpr int chunk = 512;
            for (int r = 0; r < rows; ++r)
                for (int c0 = 0, i = 0; c0 < ins.src0.cols; c0 += chunk, ++i) {
                    const int n = std::min(chunk, ins.src0.cols - c0);
                    double sum = 0, sq = 0;
                    for (int c = 0; c < n; ++c) sum += at(ins.src0, r, c0 + c);
                    const double mean = sum / n;
                    for (int c = 0; c < n; ++c) {
                        const double d = at(ins.src0, r, c0 + c) - mean;
                        sq += d * d;
                    }
                    at(ins.dst, r, 3 * i) = static_cast<float>(n);
                    at(ins.dst, r, 3 * i + 1) = static_cast<float>(mean);
                    at(ins.dst, r, 3 * i + 2) = static_cast<float>(sq / n);
                }
            return;
        }
        case Op::bn_aggr:
            // Combines the per-chunk statistics (Chan et al.'s parallel variance) into mean and variance.
            for (int r = 0; r < rows; ++r) {
                double n = 0, mean = 0, m2 = 0;
                for (int i = 0; i + 2 < ins.src0.cols; i += 3) {
                    const double nb = at(ins.src0, r, i), mb = at(ins.src0, r, i + 1), vb = at(ins.src0, r, i + 2);
                    const double delta = mb - mean, total = n + nb;
                    mean += delta * nb / total;
                    m2 += vb * nb + delta * delta * n * nb / total;
                    n = total;
                }
                at(ins.dst, r, 0) = static_cast<float>(mean);
                at(ins.dst, r, 1) = static_cast<float>(m2 / n);
            }
            return;
        case Op::memset:
            for (int r = 0; r < rows; ++r)
                for (int c = 0; c < ins.dst.cols; ++c) at(ins.dst, r, c) = round_to(out_type, ins.scalar0.value);
            return;
        case Op::affine_select:
            for (int r = 0; r < rows; ++r)
                for (int c = 0; c < ins.dst.cols; ++c)
                    at(ins.dst, r, c) =
                        round_to(out_type, r - c + ins.offset >= 0 ? at(ins.src0, r, c) : ins.scalar0.value);
            return;
        case Op::identity:
            for (int r = 0; r < rows; ++r)
                for (int c = 0; c < ins.dst.cols; ++c) at(ins.dst, r, c) = r == c ? 1.0f : 0.0f;
            return;
        case Op::dropout:
            // One 32-bit draw per element, in program order (SplitMix64 of a counter: deterministic, as the
            // hardware generator is for a given seed; not its sequence).
            for (int r = 0; r < rows; ++r)
                for (int c = 0; c < ins.dst.cols; ++c) {
                    std::uint64_t z = (++m_draws) * 0x9e3779b97f4a7c15ull;
                    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
                    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
                    const double u = static_cast<double>((z ^ (z >> 31)) >> 32) / 4294967296.0;
                    at(ins.dst, r, c) = u < ins.scalar0.value ? 0.0f : round_to(out_type, at(ins.src0, r, c));
                }
            return;
        default: throw std::logic_error(std::string("no functional semantics for ") + op_name(ins.op));
    }
}

}  // namespace trnsim::hw
