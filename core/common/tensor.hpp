#pragma once
// The one tensor include for headers: at::Tensor without the weight of <ATen/ATen.h> or <torch/torch.h>.
// .cpp files include <ATen/ATen.h> (precompiled). Never include <torch/torch.h> anywhere: it triples
// compile times on CI's two cores and we use no torch::nn.
#include <ATen/core/Tensor.h>
