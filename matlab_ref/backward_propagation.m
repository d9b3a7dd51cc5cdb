function gradient = backward_propagation(dout, input, weights, bias, S, P)
%BACKWARD_PROPAGATION Convolution layer backward pass via im2col_ref.
%   GRADIENT = BACKWARD_PROPAGATION(DOUT, INPUT, WEIGHTS, BIAS, S, P)
%   DOUT is the H' x W' x F x N gradient of the loss with respect to the
%   activations (or a struct whose field 'input' holds it, as the seed's
%   next layer returns).  INPUT, WEIGHTS, BIAS, S and P are the forward
%   arguments (BIAS only fixes the shape of the bias gradient; it may be []).
%   GRADIENT is a struct with fields
%     input   H x W x C x N   gradient with respect to INPUT
%     weight  HH x WW x C x F gradient with respect to WEIGHTS
%     bias    gradient with respect to BIAS, in the shape of BIAS (F x 1
%             or 1 x F), F x 1 when BIAS is []
%
%   The seed's BackwardPropagation as a function, with its bugs fixed; see
%   DEVIATIONS.md.
  if nargin < 6
    P = 0;
  end
  if nargin < 5
    S = 1;
  end
  if isstruct(dout)
    dout = dout.input;
  end
  [sy, sx, pt, pb, pl, pr] = conv_options(S, P);
  [H, W, C, N] = size(input);
  [HH, WW, ~, F] = size(weights);
  H_prime = floor((H + pt + pb - HH) / sy) + 1;
  W_prime = floor((W + pl + pr - WW) / sx) + 1;
  [dH, dW, dF, dN] = size(dout);
  if ~isequal([dH dW dF dN], [H_prime W_prime F N])
    error('backward_propagation: dout must be %dx%dx%dx%d, got %s', ...
          H_prime, W_prime, F, N, mat2str(size(dout)));
  end
  % The same filter matrix as the forward pass (F x HH*WW*C)
  filter_col_T = reshape(weights, [HH*WW*C F])';
  dw = zeros([HH WW C F], class(input));
  dx = zeros([H W C N], class(input));
  % Bias gradient: dout summed over rows (1), cols (2) and batch (4)
  db = reshape(sum(sum(sum(dout, 1), 2), 4), [F 1]);
  % The seed's warning, once per call: im2col_ref's own is off in the loop
  check_output_size('backward_propagation', H, W, HH, WW, sy, sx, pt, pb, pl, pr, 1, ...
                    H_prime, W_prime);
  warnState = warning('off', 'convcore:outputSize');
  restoreWarning = onCleanup(@() warning(warnState));
  for idxBatch = 1:N
    im = input(:,:,:,idxBatch);
    im_col = im2col_ref(im, HH, WW, [sy sx], [pt pb pl pr], 1);
    % F x (H'*W'), columns in im_col's order (row-major output positions)
    dout_i = dout(:,:,:,idxBatch);
    dout_i_reshaped = reshape_row_major(dout_i, [H_prime*W_prime F])';
    dw_before_reshape = dout_i_reshaped * im_col';
    dw = dw + reshape(dw_before_reshape', [HH WW C F]);
    % Gradient just before im2col, then through im2col (sum the patches),
    % straight into the unpadded H x W image
    grad_before_im2col = dout_i_reshaped' * filter_col_T;
    dx(:,:,:,idxBatch) = im2col_back_ref(grad_before_im2col, H_prime, W_prime, ...
                                         [sy sx], HH, WW, C, [pt pb pl pr], H, W);
  end
  gradient.input = dx;
  gradient.weight = dw;
  if isempty(bias)
    gradient.bias = db;
  else
    % The shape of the bias given, so that bias - lr*db never broadcasts
    % a 1 x F against an F x 1 into F x F.
    if numel(bias) ~= F
      error('backward_propagation: bias must have %d elements, got %d', F, numel(bias));
    end
    gradient.bias = reshape(db, size(bias));
  end
end
