function activations = forward_propagation(input, weights, bias, S, P)
%FORWARD_PROPAGATION Convolution layer forward pass via im2col_ref + GEMM.
%   ACTIVATIONS = FORWARD_PROPAGATION(INPUT, WEIGHTS, BIAS, S, P)
%   INPUT   H x W x C x N (MATLAB layout: rows, cols, channels, batch)
%   WEIGHTS HH x WW x C x F
%   BIAS    F x 1 (or 1 x F), or [] for no bias
%   S       stride, scalar or [SY SX]
%   P       zero padding, scalar, [PY PX] or [T B L R]
%   ACTIVATIONS is H' x W' x F x N with H' = floor((H+T+B-HH)/SY) + 1.
%
%   The seed's ForwardPropagation as a function, with its bugs fixed; see
%   DEVIATIONS.md.  Cross-correlation, like every deep-learning library.
  if nargin < 5
    P = 0;
  end
  if nargin < 4
    S = 1;
  end
  [sy, sx, pt, pb, pl, pr] = conv_options(S, P);
  % Tensor format (rows, cols, channels, batch)
  [H, W, C_in, N] = size(input);
  [HH, WW, C, F] = size(weights);
  if C_in ~= C
    error('forward_propagation: input has %d channels but weights expect %d', C_in, C);
  end
  % Output sizes: a window that does not fit is dropped (floor)
  H_prime = floor((H + pt + pb - HH) / sy) + 1;
  W_prime = floor((W + pl + pr - WW) / sx) + 1;
  if H_prime < 1 || W_prime < 1
    error('forward_propagation: a %dx%d kernel does not fit the padded input', HH, WW);
  end
  activations = zeros([H_prime, W_prime, F, N], class(input));
  % Filters as rows: row f is weights(:,:,:,f)(:), the order of im2col_ref's patch(:)
  filter_col = reshape(weights, [HH*WW*C F]);
  filter_col_T = filter_col';
  % Bias, one row per filter
  if ~isempty(bias)
    if numel(bias) ~= F
      error('forward_propagation: bias must have %d elements, got %d', F, numel(bias));
    end
    bias_m = repmat(bias(:), [1 H_prime*W_prime]);
  else
    bias_m = zeros(F, H_prime*W_prime, class(input));
  end
  % The seed's warning, once per call: im2col_ref's own is off in the loop
  check_output_size('forward_propagation', H, W, HH, WW, sy, sx, pt, pb, pl, pr, 1, ...
                    H_prime, W_prime);
  warnState = warning('off', 'convcore:outputSize');
  restoreWarning = onCleanup(@() warning(warnState));
  for idxBatch = 1:N
    im = input(:,:,:,idxBatch);
    im_col = im2col_ref(im, HH, WW, [sy sx], [pt pb pl pr], 1);
    % F x (H'*W'); column (r-1)*W'+c is output position (r, c)
    mul = (filter_col_T * im_col) + bias_m;
    activations(:,:,:,idxBatch) = reshape_row_major(mul', [H_prime W_prime F]);
  end
end
