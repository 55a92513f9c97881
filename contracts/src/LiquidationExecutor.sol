// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

interface IERC20Min {
    function balanceOf(address account) external view returns (uint256);
    function decimals() external view returns (uint8);
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

/// Aave V3 AaveOracle and Aave V2 AaveOracle: both price every reserve in one base currency.
interface IAaveOracle {
    function getAssetPrice(address asset) external view returns (uint256);
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
/// @notice One call per opportunity (`liquidate`), or several in one transaction (`batch`, each item
///         isolated). The debt asset is flash-borrowed from the Aave V3 Pool (`flashLoanSimple`; the Pool
///         has no reentrancy lock, so `liquidationCall` on the same Pool, or on an Aave V2 LendingPool,
///         works inside `executeOperation`). ALL the seized collateral is sold into the debt asset on one
///         explicit route (amountOutMinimum = `minOut`), the sale must clear the oracle floor, the loan
///         plus premium is repaid, and what is left is the gross profit G (debt-asset units). The builder's
///         share is S = G * coinbaseBps / 10000; the owner's profit is P = G - S and must be >= minProfit,
///         else the call reverts (and nobody is paid). Only after that check is S converted to ETH
///         (unwrapped if the debt is WETH, otherwise swapped to WETH on a Uniswap V3 path with
///         amountOutMinimum = `coinbaseMinOut` and unwrapped) and sent to block.coinbase; P and any other
///         balance go to the owner, so the contract ends every call holding nothing.
/// @dev Trust model. The owner (two-step rotation) chooses everything that moves value: the flash pool,
///      the routers and WETH (immutable), the lending pools that may be called and approved (allowlist,
///      each with its Aave price oracle), the largest builder share (`maxCoinbaseBps`) and the largest
///      loss against the oracle on the collateral sale (`maxSlippageBps`). Operators (hot keys that only
///      pay gas) choose the opportunity within those bounds; a leaked operator key cannot give the profit
///      away to a builder, sell into a pool it manipulated, or get an approval for its own contract.
///      Routes are packed paths: Uniswap V3 `token (20) | fee (3) | token (20) ...`, Uniswap V2
///      `token (20) | token (20) ...`; both must start at the input token and end at the output token.
///      Allowances are exact and set back to zero after each use.
///      Transient state (EIP-1153) is reset at the end of every call that sets it: the build script
///      derives the pre-Cancun `LiquidationExecutorLegacy` from this source by turning the `transient`
///      variables into ordinary storage, which is correct only because of those resets.
contract LiquidationExecutor {
    enum Venue {
        Invalid,
        UniswapV3,
        UniswapV2
    }

    struct Params {
        address lendingPool; // an allowlisted Aave V3 Pool or Aave V2 LendingPool to liquidate on
        address collateral;
        address debt; // also the flash-borrowed asset
        address user;
        uint256 debtToCover; // flash-borrowed; the pool may take less (close factor, collateral cap)
        uint256 minProfit; // owner's profit after premium and builder share, in debt-asset units
        Venue venue; // where the collateral is sold
        bytes path; // packed route collateral -> debt
        uint16 coinbaseBps; // builder's share of the gross profit, <= maxCoinbaseBps
        bytes coinbasePath; // packed Uniswap V3 route debt -> WETH (empty when debt is WETH or bps is 0)
        uint64 maxBlock; // the call reverts in any later block
        uint256 minOut; // amountOutMinimum of the collateral sale (the keeper's quote minus a tolerance)
        uint256 coinbaseMinOut; // amountOutMinimum of the builder-payment conversion debt -> WETH
    }

    uint256 private constant BPS = 10_000;

    IFlashLoanSimplePool public immutable flashPool;
    IUniswapV3Router public immutable routerV3;
    IUniswapV2Router public immutable routerV2;
    address public immutable weth;

    // owner and both bounds share one storage slot (one cold read per liquidation).
    address public owner;
    uint16 public maxCoinbaseBps;
    uint16 public maxSlippageBps;
    address public pendingOwner;

    mapping(address => bool) public isOperator;
    /// Allowlisted lending pool -> its Aave price oracle (zero: not allowed).
    mapping(address => address) public oracleOf;

    // Per-call state, transient (EIP-1153), reset at the end of the call that sets it.
    bool private transient inFlight;
    bool private transient inBatch;
    uint256 private transient tRepaid;
    uint256 private transient tSeized;
    uint256 private transient tReceived;
    uint256 private transient tPremium;

    event OperatorSet(address indexed operator, bool enabled);
    event PoolSet(address indexed pool, address oracle);
    event MaxCoinbaseBpsSet(uint16 maxCoinbaseBps);
    event MaxSlippageBpsSet(uint16 maxSlippageBps);
    event OwnershipTransferStarted(address indexed previousOwner, address indexed newOwner);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);
    /// One failed item of a `batch` (its state changes were rolled back); reason: its revert data.
    event BatchItemFailed(uint256 indexed index, bytes reason);
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
    error NotPendingOwner();
    error Reentered();
    error Expired(uint256 maxBlock);
    error BadParams();
    error BadPath();
    error UnauthorizedCallback();
    error InsufficientProfit(uint256 profit, uint256 minProfit);
    error TokenCallFailed(address token);
    error EthTransferFailed(address to);
    error NotWeth();
    error CoinbaseShareTooHigh(uint256 coinbaseBps, uint256 maxCoinbaseBps);
    error PoolNotAllowed(address pool);
    error BadOraclePrice(address asset);
    error SlippageTooHigh(uint256 received, uint256 floor);
    error NotBatchable(uint256 index);
    error AllItemsFailed(bytes firstReason);

    /// `pools[i]` is allowlisted with its price oracle `oracles[i]`.
    constructor(
        address owner_,
        address operator,
        address flashPool_,
        address routerV3_,
        address routerV2_,
        address weth_,
        uint16 maxCoinbaseBps_,
        uint16 maxSlippageBps_,
        address[] memory pools,
        address[] memory oracles
    ) {
        if (owner_ == address(0) || flashPool_ == address(0) || weth_ == address(0)) revert BadParams();
        if (maxCoinbaseBps_ > BPS || maxSlippageBps_ > BPS || pools.length != oracles.length) revert BadParams();
        owner = owner_;
        emit OwnershipTransferred(address(0), owner_);
        flashPool = IFlashLoanSimplePool(flashPool_);
        routerV3 = IUniswapV3Router(routerV3_);
        routerV2 = IUniswapV2Router(routerV2_);
        weth = weth_;
        maxCoinbaseBps = maxCoinbaseBps_;
        emit MaxCoinbaseBpsSet(maxCoinbaseBps_);
        maxSlippageBps = maxSlippageBps_;
        emit MaxSlippageBpsSet(maxSlippageBps_);
        for (uint256 i = 0; i < pools.length; ++i) {
            _setPool(pools[i], oracles[i]);
        }
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

    // --- owner ---------------------------------------------------------------------------------------

    function setOperator(address operator, bool enabled) external onlyOwner {
        isOperator[operator] = enabled;
        emit OperatorSet(operator, enabled);
    }

    /// Allows `pool` as a liquidationCall target priced by `oracle`; a zero oracle removes the pool.
    function setPool(address pool, address oracle) external onlyOwner {
        _setPool(pool, oracle);
    }

    function setMaxCoinbaseBps(uint16 bps) external onlyOwner {
        if (bps > BPS) revert BadParams();
        maxCoinbaseBps = bps;
        emit MaxCoinbaseBpsSet(bps);
    }

    function setMaxSlippageBps(uint16 bps) external onlyOwner {
        if (bps > BPS) revert BadParams();
        maxSlippageBps = bps;
        emit MaxSlippageBpsSet(bps);
    }

    /// Step one of a rotation: the current owner keeps full control until `newOwner` accepts.
    /// address(0) cancels a pending transfer.
    function transferOwnership(address newOwner) external onlyOwner {
        pendingOwner = newOwner;
        emit OwnershipTransferStarted(owner, newOwner);
    }

    function acceptOwnership() external {
        address newOwner = pendingOwner;
        if (msg.sender != newOwner) revert NotPendingOwner();
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
        pendingOwner = address(0);
    }

    /// Rescue: sends this contract's whole balance of `token` to the owner.
    function sweep(address token) external onlyOwner {
        _sweepAll(token);
    }

    function sweepETH() external onlyOwner {
        _sendEth(owner, address(this).balance);
    }

    // --- operators -----------------------------------------------------------------------------------

    /// Runs several calls of this contract's own batchable entry points in one transaction, each as a
    /// self-call so that a failing item (liquidated by a competitor, unprofitable, slippage) reverts only
    /// itself. ok[i]/results[i]: the item's success and return data (or revert data). If no item
    /// succeeds the whole call reverts (AllItemsFailed with the first item's revert data), so a bundle
    /// that would only burn gas is dropped by the builder.
    function batch(bytes[] calldata calls) external returns (bool[] memory ok, bytes[] memory results) {
        if (msg.sender != owner && !isOperator[msg.sender]) revert NotOperator();
        if (inBatch || inFlight) revert Reentered();
        uint256 n = calls.length;
        if (n == 0) revert BadParams();
        inBatch = true;
        ok = new bool[](n);
        results = new bytes[](n);
        bool anyOk;
        for (uint256 i = 0; i < n; ++i) {
            bytes calldata item = calls[i];
            if (item.length < 4 || !_batchable(bytes4(item[:4]))) revert NotBatchable(i);
            (bool success, bytes memory ret) = address(this).call(item);
            ok[i] = success;
            results[i] = ret;
            if (success) anyOk = true;
            else emit BatchItemFailed(i, ret);
        }
        if (!anyOk) revert AllItemsFailed(results[0]);
        inBatch = false;
    }

    /// Runs one liquidation; returns the owner's profit (debt-asset units) and the builder's payment (wei).
    function liquidate(Params calldata p) external returns (uint256 profit, uint256 coinbasePaid) {
        // Checks. The contract itself is a caller only for a batch item, while the batch runs.
        address owner_ = owner;
        if (msg.sender != owner_ && !isOperator[msg.sender] && !(msg.sender == address(this) && inBatch)) {
            revert NotOperator();
        }
        if (inFlight) revert Reentered();
        if (block.number > p.maxBlock) revert Expired(p.maxBlock);
        if (p.coinbaseBps > maxCoinbaseBps) revert CoinbaseShareTooHigh(p.coinbaseBps, maxCoinbaseBps);
        if (p.collateral == p.debt || p.debtToCover == 0) revert BadParams();
        if (oracleOf[p.lendingPool] == address(0)) revert PoolNotAllowed(p.lendingPool);
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
            uint256 wethAmount =
                p.debt == weth ? share : _swapV3(p.coinbasePath, p.debt, share, p.coinbaseMinOut);
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
        (tRepaid, tSeized, tReceived, tPremium) = (0, 0, 0, 0);
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
        tPremium = premium;
        _liquidateAndSell(p);
        _approve(asset, msg.sender, amount + premium); // the pool pulls exactly this after we return
        return true;
    }

    /// The least the sale of `amount` collateral may return: its value at `pool`'s oracle in debt-asset
    /// units, minus maxSlippageBps. Both roundings go up (against the operator):
    /// value = ceil(amount * P(collateral) * 10^dec(debt) / (P(debt) * 10^dec(collateral))),
    /// floor = ceil(value * (10000 - maxSlippageBps) / 10000).
    function slippageFloor(address pool, address collateral, address debt, uint256 amount)
        public
        view
        returns (uint256)
    {
        address oracle = oracleOf[pool];
        if (oracle == address(0)) revert PoolNotAllowed(pool);
        uint256 priceCollateral = IAaveOracle(oracle).getAssetPrice(collateral);
        uint256 priceDebt = IAaveOracle(oracle).getAssetPrice(debt);
        if (priceCollateral == 0) revert BadOraclePrice(collateral);
        if (priceDebt == 0) revert BadOraclePrice(debt);
        uint256 value = _divUp(
            amount * priceCollateral * 10 ** IERC20Min(debt).decimals(),
            priceDebt * 10 ** IERC20Min(collateral).decimals()
        );
        return _divUp(value * (BPS - maxSlippageBps), BPS);
    }

    // ---------------------------------------------------------------------------------------------------

    /// liquidationCall with the flash-borrowed debt, then the sale of everything seized (>= the floor).
    function _liquidateAndSell(Params memory p) private {
        uint256 debtBefore = _balance(p.debt);
        uint256 collateralBefore = _balance(p.collateral);
        _approve(p.debt, p.lendingPool, p.debtToCover);
        ILiquidationPool(p.lendingPool).liquidationCall(p.collateral, p.debt, p.user, p.debtToCover, false);
        _approve(p.debt, p.lendingPool, 0);
        tRepaid = debtBefore - _balance(p.debt);
        uint256 seized = _balance(p.collateral) - collateralBefore;
        tSeized = seized;

        uint256 received = p.venue == Venue.UniswapV3
            ? _swapV3(p.path, p.collateral, seized, p.minOut)
            : _swapV2(p.path, p.collateral, seized, p.minOut);
        uint256 floor = slippageFloor(p.lendingPool, p.collateral, p.debt, seized);
        if (received < floor) revert SlippageTooHigh(received, floor);
        tReceived = received;
    }

    /// Entry points a batch may run. A future arbitrage entry point is added here.
    function _batchable(bytes4 selector) private pure returns (bool) {
        return selector == this.liquidate.selector;
    }

    function _setPool(address pool, address oracle) private {
        if (pool == address(0)) revert BadParams();
        oracleOf[pool] = oracle;
        emit PoolSet(pool, oracle);
    }

    function _divUp(uint256 a, uint256 b) private pure returns (uint256) {
        return a == 0 ? 0 : (a - 1) / b + 1;
    }

    function _swapV3(bytes memory path, address tokenIn, uint256 amountIn, uint256 minOut)
        private
        returns (uint256 out)
    {
        _approve(tokenIn, address(routerV3), amountIn);
        out = routerV3.exactInput(
            IUniswapV3Router.ExactInputParams({
                path: path,
                recipient: address(this),
                deadline: block.timestamp,
                amountIn: amountIn,
                amountOutMinimum: minOut
            })
        );
        _approve(tokenIn, address(routerV3), 0);
    }

    function _swapV2(bytes memory path, address tokenIn, uint256 amountIn, uint256 minOut)
        private
        returns (uint256 out)
    {
        uint256 n = path.length / 20;
        address[] memory tokens = new address[](n);
        for (uint256 i = 0; i < n; ++i) {
            tokens[i] = _addressAt(path, i * 20);
        }
        _approve(tokenIn, address(routerV2), amountIn);
        uint256[] memory amounts =
            routerV2.swapExactTokensForTokens(amountIn, minOut, tokens, address(this), block.timestamp);
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
