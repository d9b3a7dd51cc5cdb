function B = padarray(A, padsize)
%PADARRAY Minimal stand-in for the Image Processing Toolbox's padarray.
%   NOT SEED CODE.  The seed calls padarray(A, [P P]); GNU Octave without the
%   image package has no padarray, so the literal code gets this shim: zero
%   padding of PADSIZE(k) on both sides of dimension k (padarray's default).
%   It exists only so that the literal code can run.
  padsize = [padsize(:)' zeros(1, max(0, ndims(A) - numel(padsize)))];
  sz = size(A);
  sz(end+1:numel(padsize)) = 1;
  B = zeros(sz + 2 * padsize, class(A));
  idx = cell(1, numel(sz));
  for k = 1:numel(sz)
    idx{k} = padsize(k) + (1:sz(k));
  end
  B(idx{:}) = A;
end
