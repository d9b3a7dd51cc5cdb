function [activations] = ForwardPropagation(obj, input, weights, bias)
% SEED LITERAL: the seed document's code, verbatim, made to parse.  Apart
% from this comment block, every line added to the seed's text ends with
% "% [added]"; nothing else is changed.  Where the seed lost an "else", the
% added "end" closes the first branch there, so the second branch's lines run
% unconditionally (that is how the seed reads as printed).  Do not fix
% anything here: see ../DEVIATIONS.md and ../show_seed_bugs.m.
% Tensor format (rows,cols,channels, batch) on matlab
[H,W,~,N] = size(input);
[HH,WW,C,F] = size(weights);
% Calculate output sizes
H_prime = (H+2*obj.m_padding-HH)/obj.m_stride +1;
W_prime = (W+2*obj.m_padding-WW)/obj.m_stride +1;
% Alocate memory for output
activations = zeros([H_prime,W_prime,F,N]);
% Preparing filter weights
filter_col = reshape(weights,[HH*WW*C F]);
filter_col_T = filter_col';
% Preparing bias
if ~isempty(bias)
bias_m = repmat(bias,[1 H_prime*W_prime]);
end % [added]
b = zeros(size(filter_col,1),1);
bias_m = repmat(b,[1 H_prime*W_prime]);
% Here we convolve each image on the batch in a for-loop, but the im2col
% could also handle a image batch at the input, so all computations would
% be just one big matrix multiplication. We opted now for this to test the
% par-for implementation with OpenMP on CPU
for idxBatch = 1:N
im = input(:,:,:,idxBatch);
im_col = im2col_ref(im,HH,WW,obj.m_stride,obj.m_padding,1);
mul = (filter_col_T * im_col) + bias_m;
activations(:,:,:,idxBatch) = reshape_row_major(mul,[H_prime W_prime size(mul,1)]);
end % [added]
% Cache results for backpropagation
obj.activations = activations;
obj.weights = weights;
obj.biases = bias;
obj.previousInput = input;
end % [added]
