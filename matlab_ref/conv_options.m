function [sy, sx, pt, pb, pl, pr] = conv_options(S, P)
%CONV_OPTIONS Normalise MATLAB-style stride and padding options.
%   [SY, SX, PT, PB, PL, PR] = CONV_OPTIONS(S, P) accepts a stride S that is
%   a scalar or [SY SX] and a padding P that is a scalar, [PY PX] or
%   [TOP BOTTOM LEFT RIGHT] (MatConvNet's order), and returns the six
%   integers.  Strides must be >= 1 and paddings >= 0.
%
%   Not in the seed: the seed only takes scalars.  See DEVIATIONS.md.
  if nargin < 2 || isempty(P)
    P = 0;
  end
  S = double(S(:)');
  P = double(P(:)');
  if any(S ~= fix(S)) || any(P ~= fix(P))
    error('conv_options: stride and padding must be integers');
  end
  switch numel(S)
    case 1
      sy = S; sx = S;
    case 2
      sy = S(1); sx = S(2);
    otherwise
      error('conv_options: stride must be a scalar or [SY SX], got %d values', numel(S));
  end
  switch numel(P)
    case 1
      pt = P; pb = P; pl = P; pr = P;
    case 2
      pt = P(1); pb = P(1); pl = P(2); pr = P(2);
    case 4
      pt = P(1); pb = P(2); pl = P(3); pr = P(4);
    otherwise
      error('conv_options: pad must be a scalar, [PY PX] or [T B L R], got %d values', numel(P));
  end
  if sy < 1 || sx < 1
    error('conv_options: stride must be >= 1');
  end
  if any([pt pb pl pr] < 0)
    error('conv_options: pad must be >= 0');
  end
end
