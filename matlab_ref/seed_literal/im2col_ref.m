function [ img_matrix ] = im2col_ref( inputImg, k_height, k_width, S , P, isConv )
%IM2COL Convert image to a matrix, this step is used to accelerate
%convolutions, implementing the convolution as a matrix multiplication
% This version currently does not support batch of images, we choose this
% because we're first going to use the CPU mode, and we want to relly on
% parfor (OpenMP)
%
% SEED LITERAL: the seed document's code, verbatim, made to parse.  Apart
% from this comment block, every line added to the seed's text ends with
% "% [added]"; nothing else is changed.  Where the seed lost an "else", the
% added "end" closes the first branch there, so the second branch's lines run
% unconditionally (that is how the seed reads as printed).  Do not fix
% anything here: see ../DEVIATIONS.md and ../show_seed_bugs.m.
% Get Image dimensions
[imgHeight, imgWidth, imgChannels] = size(inputImg);
% Calculate convolved result size.
newImgHeight = ((imgHeight + 2*P - k_height) / S)+1;
newImgWidth = ((imgWidth + 2*P - k_width) / S)+1;
offset_K_Height = 0;
offset_K_Width = 0;
% Check if it is a real number
if rem(newImgHeight,1) ~= 0 || rem(newImgWidth,1) ~= 0
warning('warning: Invalid stride or pad for input\n');
if isConv
% Convolution do a floor
newImgHeight = floor(((imgHeight + 2*P - k_height) / S)+1);
newImgWidth = floor(((imgWidth + 2*P - k_width) / S)+1);
end % [added]
% Pooling do a ceil and adapt the sampling window
newImgHeight = ceil(((imgHeight + 2*P - k_height) / S)+1);
newImgWidth = ceil(((imgWidth + 2*P - k_width) / S)+1);
offset_K_Height = k_height - 1;
offset_K_Width = k_width - 1;
end % [added]
% Allocate output sizes
img_matrix = zeros(...
(imgChannels*k_height*k_width),(newImgHeight * newImgWidth) ...
); % [added]
% Only pad if needed
if P ~= 0
inputImg_Padded = padarray(inputImg,[P P]);
% Get dimensions again before iterate on padded image, otherwise we will
% keep sampling with the old (unpadded size)
[imgHeight, imgWidth, ~] = size(inputImg_Padded);
end % [added]
% Iterate on the input image like a convolution
cont = 1;
for r=1:S:(imgHeight-offset_K_Height)
for c=1:S:(imgWidth-offset_K_Width)
% Avoid slide out of the image (Security buffer overflow)
if (((c+k_width)-1) <= imgWidth) && (((r+k_height)-1) <= imgHeight)
% Select window on input volume
if P == 0
patch = inputImg(r:(r+k_height)-1,c:(c+k_width)-1,:);
end % [added]
patch = inputImg_Padded(r:(r+k_height)-1,c:(c+k_width)-1,:);
% Convert patch to a col vector, the matlab reshape order is
% row major while other languages (C/C++, python) are col
% major, on this particular case (im2col, then matrix mult with
% the kernel) this order will not mather, but it's not allways
% true...
patchRow = reshape(patch,[],1);
% Append the transformed patch into the output matrix
img_matrix(:,cont) = patchRow;
cont = cont+1;
end % [added]
end % [added]
end % [added]
end % [added]
