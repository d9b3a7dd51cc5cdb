function [gradient] = BackwardPropagation(obj, dout)
% SEED LITERAL: the seed document's code, verbatim, made to parse.  Apart
% from this comment block, every line added to the seed's text ends with
% "% [added]"; nothing else is changed.  Where the seed lost an "else", the
% added "end" closes the first branch there, so the second branch's lines run
% unconditionally (that is how the seed reads as printed).  Do not fix
% anything here: see ../DEVIATIONS.md and ../show_seed_bugs.m.
dout = dout.input;
[H,W,~,N] = size(obj.previousInput);
[HH,WW,C,F] = size(obj.weights);
% Calculate output sizes
H_prime = (H+2*obj.m_padding-HH)/obj.m_stride +1;
W_prime = (W+2*obj.m_padding-WW)/obj.m_stride +1;
% Preparing filter weights
filter_col_T = reshape_row_major(obj.weights,[F HH*WW*C]);
% Initialize gradients
dw = zeros(size(obj.weights));
dx = zeros(size(obj.previousInput));
% Get the bias gradient which will be the sum of dout over the
% dimensions (batches(4), rows(1), cols(2))
db = sum(sum(sum(dout, 1), 2), 4);
for idxBatch = 1:N
im = obj.previousInput(:,:,:,idxBatch);
im_col = im2col_ref(im,HH,WW,obj.m_stride,obj.m_padding,1);
dout_i = dout(:,:,:,idxBatch);
dout_i_reshaped = reshape_row_major(dout_i,[F, H*W]);
dw_before_reshape = dout_i_reshaped * im_col';
dw_i = reshape(dw_before_reshape',[HH, WW, C, F]);
dw = dw + dw_i;
% We now have the gradient just before the im2col
grad_before_im2col = (dout_i_reshaped' * filter_col_T);
% Now we need to backpropagate im2col (im2col_back),
% results will padded by one always
dx_padded = im2col_back_ref(grad_before_im2col,H_prime, W_prime, obj.m_stride, HH, WW, C);
% Now we need to take out the pading
dx(:,:,:,idxBatch) = dx_padded(2:end-1, 2:end-1,:);
end % [added]
%% Output gradients
gradient.bias = db;
gradient.input = dx;
gradient.weight = dw;
end % [added]
