#pragma once
// Functional (value) semantics of the NeuronCore instructions, run alongside timing when asked
// (`--functional`). Buffers hold float values already rounded to their dtype; the tensor engine
// multiplies and accumulates in FP32 in increasing contraction order, as the array's partial sums flow
// down its rows. Engines round their outputs to the destination dtype; DMA copies values unchanged
// between equal dtypes and rounds otherwise.

#include <cstdint>
#include <vector>

#include "trnsim/hw/isa.h"

namespace trnsim::hw {

class FunctionalState {
public:
    explicit FunctionalState(const Program& program);

    std::vector<float>& dram(int tensor) { return m_dram[static_cast<std::size_t>(tensor)]; }
    const std::vector<float>& dram(int tensor) const { return m_dram[static_cast<std::size_t>(tensor)]; }
    std::vector<float>& buffer(int index) { return m_buffers[static_cast<std::size_t>(index)]; }

    void execute(const Instruction& ins);

private:
    float& at(const TileRef& t, int r, int c);
    float scalar(const Scalar& s, int r);

    const Program& m_program;
    std::vector<std::vector<float>> m_dram;
    std::vector<std::vector<float>> m_buffers;
    std::vector<float> m_stationary;  // K x C weights held by the tensor engine
    int m_stationary_k = 0;
    int m_stationary_c = 0;
    std::uint64_t m_draws = 0;  // dropout: random values drawn so far (a counter-based generator)
};

float apply_activation(ActFunc f, float x);
float apply_alu(AluOp op, float a, float b);

}  // namespace trnsim::hw
