function out = max_pool_ref(input, HH, WW, S, P)
%MAX_POOL_REF Max pooling the seed's way: max over the columns of im2col_ref(..., 0).
%   OUT = MAX_POOL_REF(INPUT, HH, WW, S, P) with INPUT of size H x W x C x N
%   returns the H' x W' x C x N maxima of the HH x WW windows, each channel on
%   its own.  The windows are im2col_ref's pooling windows (ISCONV = 0):
%   H' = ceil((H+T+B-HH)/SY) + 1, and the padding and the windows hanging over
%   the bottom/right edge read zeros (so an all-negative window that holds one
%   has the maximum 0).  S defaults to [HH WW]; P to 0.  NaN is skipped, as by
%   MAX.  Warns 'convcore:outputSize' when H' or W' is not an integer before
%   the ceil.
%
%   Not in the seed (which only has im2col_ref's isConv = 0 path); see
%   DEVIATIONS.md.  convcore.matlab.max_pool is the Python side.
  if nargin < 5
    P = 0;
  end
  if nargin < 4
    S = [];
  end
  [H, W, C, N] = size(input);
  [sy, sx, pt, pb, pl, pr, H_prime, W_prime] = pool_windows('max_pool_ref', H, W, HH, WW, S, P);
  warnState = warning('off', 'convcore:outputSize');
  restoreWarning = onCleanup(@() warning(warnState));
  L = H_prime * W_prime;
  out = zeros([H_prime W_prime C N], class(input));
  for n = 1:N
    % (HH*WW*C) x L, each column a window in patch(:) order: HH*WW taps per channel
    cols = reshape(im2col_ref(input(:,:,:,n), HH, WW, [sy sx], [pt pb pl pr], 0), [HH*WW, C, L]);
    m = max(cols, [], 1);                                   % 1 x C x L
    out(:,:,:,n) = reshape_row_major(reshape(m, [C L])', [H_prime W_prime C]);
  end
end
