// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

interface IERC20Min {
    function balanceOf(address account) external view returns (uint256);
}

interface IWETH9 {
    function withdraw(uint256 amount) external;
}

/// Aave V3 Pool: the flash-loan source.
interface IFlashLoanSimplePool {
    function flashLoanSimple(
        address receiverAddress,
        address asset,
        uint256 amount,
        bytes calldata params,
        uint16 referralCode
    ) external;
}

/// Aave V3 Pool and Aave V2 LendingPool share this signature.
interface ILiquidationPool {
    function liquidationCall(
        address collateralAsset,
        address debtAsset,
        address user,
        uint256 debtToCover,
        bool receiveAToken
    ) external;
}

/// Uniswap v3-periphery SwapRouter.
interface IUniswapV3Router {
    struct ExactInputParams {
        bytes path;
        address recipient;
        uint256 deadline;
        uint256 amountIn;
        uint256 amountOutMinimum;
    }

    function exactInput(ExactInputParams calldata params) external payable returns (uint256 amountOut);
}

/// Uniswap V2 Router02.
interface IUniswapV2Router {
    function swapExactTokensForTokens(
        uint256 amountIn,
        uint256 amountOutMin,
        address[] calldata path,
        address to,
        uint256 deadline
    ) external returns (uint256[] memory amounts);
}

/// @title LiquidationExecutor: flash loan -> liquidationCall -> sell the collateral -> repay -> pay.
/// @notice One call per opportunity (`liquidate`). The debt asset is flash-borrowed from the Aave V3 Pool
///         (`flashLoanSimple`; the Pool has no reentrancy lock, so `liquidationCall` on the same Pool, or
///         on an Aave V2 LendingPool, works inside `executeOperation`). ALL the seized collateral is sold
///         into the debt asset on one explicit route, the loan plus premium is repaid, and what is left is
///         the gross profit G (debt-asset units). The builder's share is S = G * coinbaseBps / 10000; the
///         owner's profit is P = G - S and must be >= minProfit, else the whole call reverts (and nobody
///         is paid). Only after that check is S converted to ETH (unwrapped if the debt is WETH, otherwise
///         swapped to WETH on a given Uniswap V3 path and unwrapped) and sent to block.coinbase; P and any
///         other balance go to the owner, so the contract ends every call holding nothing.
/// @dev Routes are packed paths: Uniswap V3 `token (20) | fee (3) | token (20) ...`, Uniswap V2
///      `token (20) | token (20) ...`; both must start at the input token and end at the output token.
///      Allowances are exact and set back to zero after each use. Swaps use amountOutMinimum = 0: the
///      final profit check bounds the whole trade (the builder's conversion swap only sizes its own tip).
contract LiquidationExecutor {
    enum Venue {
        Invalid,
        UniswapV3,
        UniswapV2
    }

    struct Params {
        address lendingPool; // Aave V3 Pool or Aave V2 LendingPool to liquidate on
        address collateral;
        address debt; // also the flash-borrowed asset
        address user;
        uint256 debtToCover; // flash-borrowed; the pool may take less (close factor, collateral cap)
        uint256 minProfit; // owner's profit after premium and builder share, in debt-asset units
        Venue venue; // where the collateral is sold
        bytes path; // packed route collateral -> debt
        uint16 coinbaseBps; // builder's share of the gross profit
        bytes coinbasePath; // packed Uniswap V3 route debt -> WETH (empty when debt is WETH or bps is 0)
        uint64 maxBlock; // the call reverts in any later block
    }

    uint256 private constant BPS = 10_000;

    address public immutable owner;
    IFlashLoanSimplePool public immutable flashPool;
    IUniswapV3Router public immutable routerV3;
    IUniswapV2Router public immutable routerV2;
    address public immutable weth;

    mapping(address => bool) public isOperator;

    // Per-call state, transient (EIP-1153): gone at the end of the transaction.
    bool private transient inFlight;
    uint256 private transient tRepaid;
    uint256 private transient tSeized;
    uint256 private transient tReceived;
    uint256 private transient tPremium;

    event OperatorSet(address indexed operator, bool enabled);
    /// profit: paid to the owner, in the debt asset; coinbasePaid: wei sent to block.coinbase.
    event Liquidated(
        address indexed lendingPool,
        address indexed user,
        address indexed collateral,
        address debt,
        uint256 debtRepaid,
        uint256 collateralSeized,
        uint256 swapOut,
        uint256 flashPremium,
        uint256 profit,
        uint256 coinbasePaid
    );

    error NotOwner();
    error NotOperator();
    error Reentered();
    error Expired(uint256 maxBlock);
    error BadParams();
    error BadPath();
    error UnauthorizedCallback();
    error InsufficientProfit(uint256 profit, uint256 minProfit);
    error TokenCallFailed(address token);
    error EthTransferFailed(address to);
    error NotWeth();

    constructor(
        address owner_,
        address operator,
        address flashPool_,
        address routerV3_,
        address routerV2_,
        address weth_
    ) {
        if (owner_ == address(0) || flashPool_ == address(0) || weth_ == address(0)) revert BadParams();
        owner = owner_;
        flashPool = IFlashLoanSimplePool(flashPool_);
        routerV3 = IUniswapV3Router(routerV3_);
        routerV2 = IUniswapV2Router(routerV2_);
        weth = weth_;
        if (operator != address(0)) {
            isOperator[operator] = true;
            emit OperatorSet(operator, true);
        }
    }

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner();
        _;
    }

    /// Only WETH sends ETH here (when we unwrap).
    receive() external payable {
        if (msg.sender != weth) revert NotWeth();
    }

    function setOperator(address operator, bool enabled) external onlyOwner {
        isOperator[operator] = enabled;
        emit OperatorSet(operator, enabled);
    }

    /// Runs one liquidation; returns the owner's profit (debt-asset units) and the builder's payment (wei).
    function liquidate(Params calldata p) external returns (uint256 profit, uint256 coinbasePaid) {
        // Checks
        if (msg.sender != owner && !isOperator[msg.sender]) revert NotOperator();
        if (inFlight) revert Reentered();
        if (block.number > p.maxBlock) revert Expired(p.maxBlock);
        if (p.coinbaseBps > BPS || p.collateral == p.debt || p.debtToCover == 0) revert BadParams();
        _checkPath(p.venue, p.path, p.collateral, p.debt);
        if (p.coinbaseBps > 0 && p.debt != weth) _checkPath(Venue.UniswapV3, p.coinbasePath, p.debt, weth);

        // Effects
        inFlight = true;

        // Interactions: the loan; executeOperation liquidates, sells and approves the repayment.
        uint256 debtBefore = _balance(p.debt);
        flashPool.flashLoanSimple(address(this), p.debt, p.debtToCover, abi.encode(p), 0);
        _approve(p.debt, address(flashPool), 0); // the pool pulled amount + premium; no allowance remains

        uint256 debtAfter = _balance(p.debt);
        uint256 gross = debtAfter > debtBefore ? debtAfter - debtBefore : 0;
        uint256 share = (gross * p.coinbaseBps) / BPS;
        profit = gross - share;
        if (profit < p.minProfit) revert InsufficientProfit(profit, p.minProfit);

        // The builder is paid only now, after the profit check, from the builder's share.
        if (share > 0) {
            uint256 wethAmount = p.debt == weth ? share : _swapV3(p.coinbasePath, p.debt, share);
            IWETH9(weth).withdraw(wethAmount);
            coinbasePaid = wethAmount;
            _sendEth(block.coinbase, wethAmount);
        }

        // Everything else to the owner: the profit (plus anything that was lying here).
        _sweepAll(p.debt);
        _sweepAll(p.collateral);
        emit Liquidated(
            p.lendingPool, p.user, p.collateral, p.debt, tRepaid, tSeized, tReceived, tPremium, profit,
            coinbasePaid
        );
        inFlight = false;
    }

    /// Aave flash-loan callback. Only the flash pool, for a loan this contract took, during `liquidate`.
    function executeOperation(
        address asset,
        uint256 amount,
        uint256 premium,
        address initiator,
        bytes calldata data
    ) external returns (bool) {
        if (msg.sender != address(flashPool) || initiator != address(this) || !inFlight) {
            revert UnauthorizedCallback();
        }
        Params memory p = abi.decode(data, (Params));
        if (asset != p.debt || amount != p.debtToCover) revert UnauthorizedCallback();

        uint256 debtBefore = _balance(asset);
        uint256 collateralBefore = _balance(p.collateral);
        _approve(asset, p.lendingPool, amount);
        ILiquidationPool(p.lendingPool).liquidationCall(p.collateral, asset, p.user, amount, false);
        _approve(asset, p.lendingPool, 0);
        uint256 repaid = debtBefore - _balance(asset);
        uint256 seized = _balance(p.collateral) - collateralBefore;

        uint256 received = p.venue == Venue.UniswapV3
            ? _swapV3(p.path, p.collateral, seized)
            : _swapV2(p.path, p.collateral, seized);

        (tRepaid, tSeized, tReceived, tPremium) = (repaid, seized, received, premium);
        _approve(asset, msg.sender, amount + premium); // the pool pulls exactly this after we return
        return true;
    }

    /// Rescue: sends this contract's whole balance of `token` to the owner.
    function sweep(address token) external onlyOwner {
        _sweepAll(token);
    }

    function sweepETH() external onlyOwner {
        _sendEth(owner, address(this).balance);
    }

    // ---------------------------------------------------------------------------------------------------

    function _swapV3(bytes memory path, address tokenIn, uint256 amountIn) private returns (uint256 out) {
        _approve(tokenIn, address(routerV3), amountIn);
        out = routerV3.exactInput(
            IUniswapV3Router.ExactInputParams({
                path: path,
                recipient: address(this),
                deadline: block.timestamp,
                amountIn: amountIn,
                amountOutMinimum: 0
            })
        );
        _approve(tokenIn, address(routerV3), 0);
    }

    function _swapV2(bytes memory path, address tokenIn, uint256 amountIn) private returns (uint256 out) {
        uint256 n = path.length / 20;
        address[] memory tokens = new address[](n);
        for (uint256 i = 0; i < n; ++i) {
            tokens[i] = _addressAt(path, i * 20);
        }
        _approve(tokenIn, address(routerV2), amountIn);
        uint256[] memory amounts =
            routerV2.swapExactTokensForTokens(amountIn, 0, tokens, address(this), block.timestamp);
        _approve(tokenIn, address(routerV2), 0);
        out = amounts[n - 1];
    }

    /// A V3 path is 20 + 23k bytes (k >= 1 hops), a V2 path 20k bytes (k >= 2 tokens);
    /// both must run tokenIn -> tokenOut.
    function _checkPath(Venue venue, bytes memory path, address tokenIn, address tokenOut) private pure {
        uint256 len = path.length;
        bool ok;
        if (venue == Venue.UniswapV3) ok = len >= 43 && (len - 20) % 23 == 0;
        else if (venue == Venue.UniswapV2) ok = len >= 40 && len % 20 == 0;
        if (!ok || _addressAt(path, 0) != tokenIn || _addressAt(path, len - 20) != tokenOut) revert BadPath();
    }

    function _addressAt(bytes memory b, uint256 offset) private pure returns (address a) {
        assembly ("memory-safe") {
            a := shr(96, mload(add(add(b, 32), offset)))
        }
    }

    function _balance(address token) private view returns (uint256) {
        return IERC20Min(token).balanceOf(address(this));
    }

    function _sweepAll(address token) private {
        uint256 amount = _balance(token);
        if (amount > 0) _tokenCall(token, abi.encodeWithSignature("transfer(address,uint256)", owner, amount));
    }

    function _approve(address token, address spender, uint256 amount) private {
        _tokenCall(token, abi.encodeWithSignature("approve(address,uint256)", spender, amount));
    }

    /// ERC-20 call that accepts tokens returning nothing (USDT) and rejects `false` and non-contracts.
    function _tokenCall(address token, bytes memory data) private {
        (bool ok, bytes memory ret) = token.call(data);
        if (!ok || (ret.length == 0 ? token.code.length == 0 : !abi.decode(ret, (bool)))) {
            revert TokenCallFailed(token);
        }
    }

    function _sendEth(address to, uint256 amount) private {
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert EthTransferFailed(to);
    }
}
