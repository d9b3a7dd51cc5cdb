function out = reshape_row_major(x, varargin)
%RESHAPE_ROW_MAJOR Reshape in row-major (C, NumPy) element order.
%   OUT = RESHAPE_ROW_MAJOR(X, SHAPE) returns an array of size SHAPE whose
%   elements, read in row-major order (last index fastest), are the elements
%   of X read in row-major order.  For an array indexed the same way in both
%   languages this is NumPy's x.reshape(shape), and convcore.matlab's
%   reshape_row_major.  MATLAB's own RESHAPE reads and writes in
%   column-major order (first index fastest).
%
%   OUT = RESHAPE_ROW_MAJOR(X, D1, D2, ...) takes the sizes as separate
%   arguments, as RESHAPE does; one of them may be [] and is then inferred
%   from NUMEL(X), which the other sizes must divide (RESHAPE(X, [], N)).
%   (convcore.matlab.reshape_row_major takes None or -1 for it.)
%
%   The seed calls this function but never defines it; see DEVIATIONS.md.
  if nargin < 2
    error('reshape_row_major: pass a shape, or the sizes as separate arguments');
  end
  if nargin == 2
    shape = double(varargin{1}(:)');
    if isempty(shape)
      error('reshape_row_major: the shape is empty');
    end
  else
    empty = cellfun(@isempty, varargin);
    if sum(empty) > 1
      error('reshape_row_major: only one size may be [] (inferred), got %d', sum(empty));
    end
    if any(cellfun(@numel, varargin(~empty)) ~= 1)
      error('reshape_row_major: each size must be a scalar or []');
    end
    shape = zeros(1, numel(varargin));
    shape(~empty) = cellfun(@double, varargin(~empty));
    if any(empty)
      known = prod(shape(~empty));
      if known == 0
        error('reshape_row_major: cannot infer a size: the others multiply to 0');
      end
      if mod(numel(x), known) ~= 0
        error(['reshape_row_major: %d elements are not divisible by the product of ' ...
               'the other sizes, %d'], numel(x), known);
      end
      shape(empty) = numel(x) / known;
    end
  end
  if any(shape < 0) || any(shape ~= fix(shape))
    error('reshape_row_major: sizes must be integers >= 0, got [%s]', num2str(shape));
  end
  if numel(shape) == 1
    shape = [shape 1];
  end
  if prod(shape) ~= numel(x)
    error('reshape_row_major: can''t reshape %d elements into [%s]', ...
          numel(x), num2str(shape));
  end
  nd = ndims(x);
  % Reversing the axes turns row-major order into MATLAB's column-major one.
  xt = permute(x, nd:-1:1);
  out = permute(reshape(xt, fliplr(shape)), numel(shape):-1:1);
end
