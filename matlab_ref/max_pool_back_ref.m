function dx = max_pool_back_ref(dout, input, HH, WW, S, P)
%MAX_POOL_BACK_REF Backward pass of max_pool_ref, the seed's way.
%   DX = MAX_POOL_BACK_REF(DOUT, INPUT, HH, WW, S, P) with DOUT the
%   H' x W' x C x N gradient of max_pool_ref(INPUT, HH, WW, S, P) (or a
%   struct whose field 'input' holds it).  Each window's gradient goes to its
%   maximum: [m, i] = max(cols) over the window's column of im2col_ref(..., 0),
%   i.e. the first maximum in patch(:) order (down the window's columns); then
%   im2col_back_ref(..., P, H, W) sums the windows back, so a maximum in the
%   padding or the overhang passes its gradient to nothing.  DX is
%   H x W x C x N.
%
%   See DEVIATIONS.md.  convcore.matlab.max_pool_backward is the Python side.
  if nargin < 6
    P = 0;
  end
  if nargin < 5
    S = [];
  end
  if isstruct(dout)
    dout = dout.input;
  end
  [H, W, C, N] = size(input);
  [sy, sx, pt, pb, pl, pr, H_prime, W_prime] = ...
      pool_windows('max_pool_back_ref', H, W, HH, WW, S, P);
  check_pool_dout('max_pool_back_ref', dout, [H_prime W_prime C N]);
  warnState = warning('off', 'convcore:outputSize');
  restoreWarning = onCleanup(@() warning(warnState));
  K = HH * WW;
  L = H_prime * W_prime;
  dx = zeros([H W C N], class(dout));
  for n = 1:N
    cols = reshape(im2col_ref(input(:,:,:,n), HH, WW, [sy sx], [pt pb pl pr], 0), [K, C, L]);
    [~, idx] = max(cols, [], 1);                            % 1 x C x L, first maximum
    d = reshape_row_major(dout(:,:,:,n), [L C])';           % C x L
    dcols = zeros(K, C, L, class(dout));
    dcols(idx(:) + K * (0:C*L-1)') = d(:);                  % one tap per (channel, window)
    dx(:,:,:,n) = im2col_back_ref(reshape(dcols, [K*C, L])', H_prime, W_prime, [sy sx], ...
                                  HH, WW, C, [pt pb pl pr], H, W);
  end
end
